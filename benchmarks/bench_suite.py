"""Cost of the standard attack suite per agent, read from a results home's stored provenance.

    python benchmarks/bench_suite.py --home reports/hopper/results-home [--agent ID ...] [--json OUT]

For every agent with the full suite: the wall time of every suite cell (the evaluation, `wall_s`)
and of every fit it needed (the learned attacks' training and `targeted`'s screening, the artifact's
`wall_s`), per member and in total, one core each (jobs run with one torch thread). Wall times
are as recorded when the cells ran: the load on the machine at that time is part of them, so run the
suite on a quiet machine (`robbench evaluate --agents ID --attacks standard --workers 1`) before
quoting a figure, and state the load.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from robbench.report import build_boards
from robbench.store import ResultsStore, canonical_json
from robbench.suite import get_suite


def suite_costs(home: Path, agents: list[str] | None = None) -> dict[str, dict[str, float]]:
    suite = get_suite()
    out: dict[str, dict[str, float]] = {}
    with ResultsStore(home, readonly=True) as store:
        fits: dict[tuple[str, str, str], float] = {}
        for row in store.conn.execute("SELECT agent_id, attack, fit_config, meta FROM attack_artifacts"):
            fits[(row["agent_id"], row["attack"], row["fit_config"])] = float(json.loads(row["meta"]).get("wall_s", 0))
        for board in build_boards(store):
            if board.departures:
                continue
            for e in board.ranked:
                if agents and e.agent_id not in agents:
                    continue
                costs: dict[str, float] = {}
                for attack, cell in e.cells.items():
                    members = cell["scan_members"]
                    total = sum(float(m["wall_s"]) for m in members)
                    from robbench.registry import get_attack

                    cls = get_attack(attack)
                    seen = set()
                    for m in members:
                        if not cls.needs_fit:
                            break
                        fc = canonical_json(cls(board.eps, **m["attack_config"]).fit_config()) \
                            if attack == "targeted" else canonical_json(m["attack_config"])
                        if fc not in seen:
                            seen.add(fc)
                            total += fits.get((e.agent_id, attack, fc), 0.0)
                    costs[attack] = round(total, 1)
                costs["total"] = round(sum(costs.values()), 1)
                out[e.agent_id] = costs
    return {"suite": suite.id, "agents": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", required=True, type=Path)
    ap.add_argument("--agent", action="append")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    res = suite_costs(args.home, args.agent)
    rows = res["agents"]
    if not rows:
        raise SystemExit("no agent of this home has the full standard suite")
    attacks = [a for a in get_suite().attacks] + ["total"]
    print(f"{res['suite']}: wall seconds per agent (fits included), {len(rows)} agents")
    print("agent".ljust(36) + "".join(a.rjust(10) for a in attacks))
    for aid, c in rows.items():
        print(aid.ljust(36) + "".join(f"{c.get(a, 0):10.0f}" for a in attacks))
    print("median".ljust(36) + "".join(f"{statistics.median(c.get(a, 0) for c in rows.values()):10.0f}"
                                       for a in attacks))
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
