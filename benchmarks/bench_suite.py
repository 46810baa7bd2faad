"""Cost of the standard attack suite per agent, read from a results home's stored provenance.

    python benchmarks/bench_suite.py --home reports/hopper/results-home [--agent ID ...] [--json OUT]
    python benchmarks/bench_suite.py --time hopper/barppo/paper/0 [--json OUT]   # time it here, now

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
        for art in store.artifacts():
            fits[(art.agent_id, art.attack, canonical_json(art.fit_config))] = float(art.meta.get("wall_s", 0))
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
                        fc = canonical_json({k: v for k, v in m["attack_config"].items()
                                             if k not in cls.fit_independent})
                        if fc not in seen:
                            seen.add(fc)
                            total += fits.get((e.agent_id, attack, fc), 0.0)
                    costs[attack] = round(total, 1)
                costs["total"] = round(sum(costs.values()), 1)
                out[e.agent_id] = costs
    return {"suite": suite.id, "agents": out}


def time_white_box(agent_id: str) -> dict[str, float]:
    """Wall seconds, here and now, of every suite member that needs no training (targeted's
    screening included), on one core, for one zoo agent: the part of the suite this session added."""
    import time

    import torch

    import robbench
    from robbench.evaluate import Protocol, evaluate
    from robbench.registry import get_attack
    from robbench.threat import LearnedAttack, Victim

    torch.set_num_threads(1)
    suite = get_suite()
    agent = robbench.load_agent(agent_id)
    protocol = Protocol.for_env(agent.env)
    out: dict[str, float] = {}
    for name in suite.attacks:
        cls = get_attack(name)
        if cls.needs_fit and name != "targeted":
            continue
        start = time.perf_counter()
        if issubclass(cls, LearnedAttack):
            screen = cls(protocol.eps, **suite.params(name))
            screen.fit(Victim(agent), torch.Generator().manual_seed(0))
            out[f"{name} (screening)"] = round(time.perf_counter() - start, 1)
            for member in cls.scan_members(suite.params(name)):
                attack = cls(protocol.eps, **{**suite.params(name), **member})
                attack.load_state_dict(screen.state_dict())
                t = time.perf_counter()
                evaluate(agent, attack, protocol)
                out[f"{name} rank {member['rank']}"] = round(time.perf_counter() - t, 1)
        else:
            evaluate(agent, cls(protocol.eps, **suite.params(name)), protocol)
            out[name] = round(time.perf_counter() - start, 1)
    out["total"] = round(sum(out.values()), 1)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--time", metavar="AGENT", help="time the suite's untrained members on this zoo agent")
    ap.add_argument("--home", type=Path)
    ap.add_argument("--agent", action="append")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.time:
        import os

        res = {"suite": get_suite().id, "agent": args.time, "load_average": os.getloadavg()[0],
               "wall_s": time_white_box(args.time)}
        print(json.dumps(res, indent=1))
        if args.json:
            args.json.write_text(json.dumps(res, indent=1))
        return
    if args.home is None:
        raise SystemExit("give --home (stored costs) or --time AGENT (time it here)")
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
