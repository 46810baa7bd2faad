"""User-facing errors: one sentence naming the bad value and what would be accepted."""

from __future__ import annotations

from collections.abc import Iterable


class RobbenchError(Exception):
    """An error caused by the user's input or files; the CLI prints it as one line, no traceback."""


def unknown(kind: str, value: object, valid: Iterable[str]) -> RobbenchError:
    """Build the standard 'unknown X' error listing the accepted choices."""
    choices = ", ".join(sorted(valid))
    return RobbenchError(f"unknown {kind} {value!r}; valid choices: {choices}")
