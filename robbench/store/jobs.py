"""The store's jobs log (the `jobs` table): the last outcome of every job a grid ran here.

Only the driver of a grid writes it (robbench/jobs.py), one row per job key; workers write their
results through the other tables. The table is created by the first grid run in a home, in one
transaction, so that a full disk is one line before any work starts.
"""

from __future__ import annotations

from dataclasses import fields, replace

from robbench.store.core import StoreCore
from robbench.store.rows import JobRecord, canonical_json, now
from robbench.store.schema import JOBS_SCHEMA


class JobsMixin(StoreCore):
    def ensure_jobs_table(self) -> None:
        """Create the jobs table if missing, in one transaction: a full disk is one line, never a traceback."""
        self.ensure_table(JOBS_SCHEMA)

    def write_job(self, job: JobRecord) -> JobRecord:
        """Record a job's outcome, replacing the one before it; returns the record as stored (`updated` set)."""
        self.ensure_jobs_table()
        rec = replace(job, updated=now())
        with self.transaction():
            self._insert("jobs", [{**vars(rec), "spec": canonical_json(rec.spec), "info": canonical_json(rec.info)}],
                         conflict="replace")
        return rec

    def jobs(self, status: str | None = None) -> list[JobRecord]:
        """The jobs log (of one status, if given), ordered by kind and label; none before the first grid."""
        if not self.has_table("jobs"):
            return []
        where, args = ("WHERE status = ?", (status,)) if status is not None else ("", ())
        rows = self.conn.execute(f"SELECT * FROM jobs {where} ORDER BY kind, label, job_key", args).fetchall()
        names = [f.name for f in fields(JobRecord)]
        return [JobRecord(**{n: d[n] for n in names}) for d in (self._row("jobs", r) for r in rows)]
