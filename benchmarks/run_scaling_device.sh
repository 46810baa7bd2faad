#!/bin/bash
# The scaling benchmark on a bare 16-core machine with Python 3.12 + torch (the device lent to some
# sessions). Wheels for gymnasium/mujoco travel in .whl/ (see /work/.library/device/README.md).
# Usage: bash benchmarks/run_scaling_device.sh <tag> <out-dir> [workers]
set -euo pipefail
tag=${1:-device}; out=${2:-benchmarks/results}; workers=${3:-1,4,8,16}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site
python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-cache-dir --target /tmp/rb .
export PYTHONPATH=/tmp/rb:/tmp/site PYTHONUNBUFFERED=1
repo=$(pwd)
cd /tmp  # not the checkout: `python -m robbench.cli` must import the installed package
python3 -c "import robbench, torch, mujoco, gymnasium, os; print('robbench', robbench.__version__, 'torch', torch.__version__, 'mujoco', mujoco.__version__, 'cores', os.cpu_count())"
python3 "$repo/benchmarks/bench_scaling.py" --grid "$repo/benchmarks/grids/scaling.toml" --workers "$workers" \
  --tag "$tag" --out "$out/scaling_$tag.json"
