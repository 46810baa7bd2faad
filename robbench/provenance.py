"""Code version and machine description recorded with every checkpoint and result."""

from __future__ import annotations

import functools
import hashlib
import platform
from importlib import metadata
from pathlib import Path

import robbench


@functools.cache
def source_hash() -> str:
    """sha256 over robbench's own source files (harness, trainers, attacks), stable across installs.

    Works the same from a checkout, an editable install or a wheel, unlike `git describe`.
    """
    h = hashlib.sha256()
    roots = [Path(robbench.__file__).parent]
    for sub in ("agents", "attacks"):
        try:
            mod = __import__(f"robbench.{sub}", fromlist=["__file__"])
            roots.append(Path(mod.__file__).parent)
        except ImportError:
            pass
    for root in roots:
        for path in sorted(root.glob("*.py")):
            h.update(f"{root.name}/{path.name}".encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def code_version() -> str:
    return f"{robbench.__version__}+{source_hash()[:12]}"


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


@functools.cache
def cpu_signature() -> str:
    """The CPU as far as float results go: torch's kernel capability (AVX2, AVX512, …) and a digest of
    the CPU's feature flags. Two machines with the same software but other CPU features can differ in
    the last float bits (MKL and MuJoCo pick kernels by feature), which contact dynamics amplify."""
    import hashlib

    try:
        import torch

        simd = torch.backends.cpu.get_cpu_capability()
    except Exception:  # pragma: no cover - torch is a dependency
        simd = "?"
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1] for line in f if line.startswith(("flags", "Features"))), "")
    except OSError:
        flags = platform.processor()
    digest = hashlib.sha256(" ".join(sorted(flags.split())).encode()).hexdigest()[:8]
    return f"{simd} cpu-{digest}"


def machine() -> dict[str, str]:
    import os

    return {
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_signature": cpu_signature(),
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "gymnasium": _version("gymnasium"),
        "mujoco": _version("mujoco"),
        "numpy": _version("numpy"),
    }


def machine_summary() -> str:
    m = machine()
    return (f"{m['host']} ({m['cores']} cores, {m['cpu_signature']}, py{m['python']}, torch {m['torch']}, "
            f"mujoco {m['mujoco']})")
