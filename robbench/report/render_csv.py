"""CSV: flat rows (one per agent and board, then the published rows) with every per-episode return,
for spreadsheets and pandas. It shows numbers only, so it reads the model, not the outline."""

from __future__ import annotations

import csv
import io

from robbench.report.model import Board, board_rows
from robbench.report.paper import OURS_LABEL


def to_csv(boards: list[Board]) -> str:
    buf = io.StringIO()
    rows = []
    for b in boards:
        proto = "standard" if not b.departures else "; ".join(b.departures)
        for row, e in zip(board_rows(b), b.entries):
            flat = {"source": OURS_LABEL, "env": b.env, "eps": b.eps, "protocol": proto}
            flat.update(row)
            flat["flags"] = " ".join(row["flags"])
            flat["missing_attacks"] = " ".join(row["missing_attacks"])  # lists are space-separated, like flags
            flat["not_applicable_attacks"] = " ".join(row["not_applicable_attacks"])
            flat["worst_by_budget"] = " ".join(f"{p['budget_fraction']:g}:{p['worst_mean']:.6f}"
                                               for p in row["worst_by_budget"])
            for a in b.attacks:
                c = e.cells.get(a)
                flat[f"{a}_returns"] = " ".join(f"{r:.6f}" for r in c["returns"]) if c else ""
            rows.append(flat)
        for r in b.published or []:
            rows.append({**r.to_record(), "rank": "", "protocol": "paper (gym v2)"})
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


