"""User-facing errors: one sentence naming the bad value and what would be accepted."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterable


class RobbenchError(Exception):
    """An error caused by the user's input or files; the CLI prints it as one line, no traceback."""


def unknown(kind: str, value: object, valid: Iterable[str]) -> RobbenchError:
    """Build the standard 'unknown X' error listing the accepted choices."""
    choices = ", ".join(sorted(valid))
    return RobbenchError(f"unknown {kind} {value!r}; valid choices: {choices}")


_FULL = {errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}
_SQLITE_READONLY, _SQLITE_FULL = 8, 13


def io_error(exc: BaseException, path: object) -> RobbenchError:
    """One line for a failed file or database access: disk full, read-only, permission denied, ...

    `exc` is an OSError, a database error (the store's, which carries SQLite's `sqlite_errorcode`) or a
    safetensors error ("... (os error 28)")."""
    code = getattr(exc, "errno", None)
    if code is None:
        match = re.search(r"os error (\d+)", str(exc))
        code = int(match.group(1)) if match else None
    sqlite_code = getattr(exc, "sqlite_errorcode", None)
    if sqlite_code is not None:
        code = {_SQLITE_FULL: errno.ENOSPC, _SQLITE_READONLY: errno.EROFS}.get(sqlite_code & 0xFF, code)
    where = repr(str(path))
    name = getattr(exc, "sqlite_errorname", "") or ""
    if any(w in name for w in ("_WRITE", "_TRUNCATE", "_FSYNC", "_SHMSIZE")):  # SQLite hides the errno
        return RobbenchError(f"disk I/O error while writing {where} (disk full or file too large?)")
    if code in _FULL:
        return RobbenchError(f"disk full or file too large while writing {where}")
    if code == errno.EROFS:
        return RobbenchError(f"cannot write {where}: it is read-only")
    if code in (errno.EACCES, errno.EPERM):
        return RobbenchError(f"permission denied on {where}")
    strerror = getattr(exc, "strerror", None) or (os.strerror(code) if isinstance(code, int) else None)
    reason = " ".join(str(strerror or exc).split())
    return RobbenchError(f"I/O error on {where}: {reason}")


SEED_LIMIT = 2**31
"""Seeds are integers 0 ≤ seed < 2**31: every consumer takes them (torch.manual_seed needs < 2**64,
SQLite integers < 2**63, numpy's legacy RandomState < 2**32), and derived seeds such as
seed·100003 + i stay exact."""


def validate_seed(seed: object, what: str = "--seed") -> int:
    """The seed as an int, or a one-line error naming it and the valid range (0 ≤ seed < 2**31)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < SEED_LIMIT:
        shown = f"{seed!r}" if not isinstance(seed, int) or seed.bit_length() <= 256 else f"of {seed.bit_length()} bits"
        raise RobbenchError(f"{what}: seed {shown} is out of range; seeds are integers 0 ≤ seed < 2**31 "
                            f"(≤ {SEED_LIMIT - 1})")
    return seed


def validate_count(value: object, what: str) -> int:
    """A count (episodes, states, env copies) as an int ≥ 1, or one line naming `what`.

    The one check of such a count, shared by the CLI (which names the flag), grid files (the key)
    and the typed job specs (the field)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise RobbenchError(f"{what} must be an integer ≥ 1, got {value!r}")
    return value
