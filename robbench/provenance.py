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
def machine() -> dict[str, str]:
    import os

    return {
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "torch": _version("torch"),
        "gymnasium": _version("gymnasium"),
        "mujoco": _version("mujoco"),
        "numpy": _version("numpy"),
    }


def machine_summary() -> str:
    m = machine()
    return f"{m['host']} ({m['cores']} cores, py{m['python']}, torch {m['torch']}, mujoco {m['mujoco']})"
