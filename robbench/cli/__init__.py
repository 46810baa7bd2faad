"""The `robbench` command line (typer + rich).

    robbench train <method> <env> [--seed | --seeds 0-16] [--steps --preset --num-envs --param k=v]
    robbench import <model> --env <env> [--format sb3|cleanrl|torch|onnx|rlzoo --vecnormalize --obs-stats --raw-obs
                    --activation --spec --name]
    robbench run <grid.toml|yaml> [--workers N] [--backend local|ray [--address auto|host:port]]
    robbench evaluate --agents all|<ids> --attacks all|<names> [--episodes --eps]
    robbench certify --agents all|<ids> [--method ibp|crown-ibp|crown|all --eps --states --threshold --workers N]
    robbench report --format markdown|csv|json|latex|html [--out --entries DIR]
    robbench submit <agent-id> --out FILE.json
    robbench list envs|trainers|attacks|agents
    robbench merge <other-home>... [--home]
    robbench zoo list|verify|export
    robbench demo
    robbench --version

Bad input gets one line on stderr naming the bad value and the valid choices, exit status 2, no
traceback. A job that fails (a bad checkpoint, an attack that errs) is its own `✗ label: reason`
line, the other jobs still run, and the exit status is 1.

A package: `common` (the app, one-line errors, consoles, the progress of a run of jobs, plain
output off a terminal), `jobs` (train, evaluate, certify, run), `results` (import, report, list,
merge) and `zoo` (zoo, toy, demo). The commands only parse their flags and call the library:
every job comes from robbench/plan.py or robbench/grid.py, the one path to the scheduler.
"""

from __future__ import annotations

from robbench.cli.common import app, cli_errors, main, write_atomic
from robbench.cli.jobs import certify, evaluate, run, train
from robbench.cli.results import import_, list_, merge, report
from robbench.cli.zoo import demo, toy, zoo_export, zoo_list, zoo_verify

__all__ = ["app", "certify", "cli_errors", "demo", "evaluate", "import_", "list_", "main", "merge", "report", "run",
           "toy", "train", "write_atomic", "zoo_export", "zoo_list", "zoo_verify"]
