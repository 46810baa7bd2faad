"""The two registries every part of robbench plugs into: trainers and attacks.

A trainer module in `agents/` decorates its `Objective` subclass with `@register_trainer("name")`;
an attack module in `attacks/` decorates its `Attack` subclass with `@register_attack("name")`.
Both packages import all their modules on first use, so adding a file is all it takes.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from robbench.errors import unknown

TRAINERS: dict[str, type] = {}
ATTACKS: dict[str, type] = {}


def register_trainer(name: str):
    def deco(cls):
        cls.method = name
        TRAINERS[name] = cls
        return cls

    return deco


def register_attack(name: str):
    def deco(cls):
        cls.name = name
        ATTACKS[name] = cls
        return cls

    return deco


def _load_all(package: str) -> None:
    pkg = importlib.import_module(package)
    for info in pkgutil.iter_modules(pkg.__path__):
        if not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")


def trainers() -> dict[str, type]:
    _load_all("robbench.agents")
    return dict(sorted(TRAINERS.items()))


def attacks() -> dict[str, type]:
    _load_all("robbench.attacks")
    return dict(sorted(ATTACKS.items()))


def get_trainer(name: str) -> Any:
    table = trainers()
    if name not in table:
        raise unknown("method", name, table)
    return table[name]


def get_attack(name: str) -> Any:
    table = attacks()
    if name not in table:
        raise unknown("attack", name, table)
    return table[name]
