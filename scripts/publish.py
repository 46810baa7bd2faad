"""Publish boards: snapshot working results homes into reports/<env>/, render every view, rebuild the zoo.

    python scripts/publish.py hopper=/path/to/home walker2d=/path/to/home2 ...

For each env: the working home's database is copied with SQLite's online backup (safe while
writers run), with the agents and attack artifacts it references (no mid-job snapshots), into
reports/<env>/results-home; the leaderboard is rendered as markdown, JSON, HTML and CSV with the
paper's rows (`--compare-paper`); reports/<env>/REPRODUCE.md gets the commands, budgets, machine
and wall times read from the stored provenance. Then robbench/zoo/ is rebuilt from every published
home (`robbench zoo export`).

It is a maintainer's script of this repository, not part of the package: it writes the repository's
reports/, README.md and robbench/zoo/, which an installed robbench does not have. Every read and write
of a results home goes through robbench.store.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from robbench.report import OURS_LABEL, PAPER_LABEL
from robbench.store import ResultsStore
from robbench.suite import get_suite

REPO = Path(__file__).resolve().parent.parent
#: Attacks kept off the published homes. None since standard-v1: boards are ranked by the standard
#: suite alone, and a cell of any other attack only lowers the "best known" column, which is what a
#: stronger attack recorded for some agents should do.
UNPUBLISHED_ATTACKS: tuple[str, ...] = ()


def snapshot(src: Path, dst: Path) -> None:
    """Copy the working home `src` to `dst`: its database (online backup, safe while writers run) less
    the unpublished attacks' rows and the jobs that did not finish, compacted to one file, and every
    agent and fitted attack it indexes (no mid-job snapshots). `dst` is replaced only once complete."""
    tmp = dst.with_name(dst.name + ".new")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    with ResultsStore(src, readonly=True) as working:
        working.backup_to(tmp)
    with ResultsStore(tmp) as published:
        for attack in UNPUBLISHED_ATTACKS:
            published.drop_rows(attack=attack)
        published.drop_unfinished_jobs()
        paths = published.indexed_files()
        published.compact()
    for rel in paths:
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, tmp / rel)
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)


def robbench(*args: str) -> str:
    res = subprocess.run([sys.executable, "-m", "robbench.cli", *args], capture_output=True, text=True, cwd=REPO)
    if res.returncode != 0:
        raise SystemExit(f"robbench {' '.join(args)} failed:\n{res.stderr[-2000:]}")
    return res.stdout


def reproduction_note(env: str, home: Path) -> str:
    """reports/<env>/REPRODUCE.md: the commands, budgets, machines and wall times, from the stored provenance."""
    with ResultsStore(home, readonly=True) as store:
        agents = sorted(store.agents(), key=lambda a: (a.method, a.seed))
        cells = store.cells()
        fits = store.artifacts()
    train_rows, train_total = [], 0.0
    machines = set()
    for a in agents:
        prov = a.meta.get("provenance", {})
        train_total += prov.get("wall_s") or 0.0
        m = prov.get("machine") or {}
        machines.add(f"{m.get('host')} ({m.get('cores')} cores, torch {m.get('torch')}, mujoco {m.get('mujoco')})"
                     if isinstance(m, dict) else str(m))
        train_rows.append(f"| `{a.agent_id}` | {a.steps:,} | {(prov.get('wall_s') or 0) / 60:.1f} min | "
                          f"{prov.get('steps_per_s', '—')} | {prov.get('code_version', '—')} |")
    per_attack: dict[str, list[float]] = {}
    presets: dict[str, set] = {}
    for c in cells:
        per_attack.setdefault(c["attack"], []).append(c["wall_s"])
        if "preset" in c["attack_config"]:
            presets.setdefault(c["attack"], set()).add(c["attack_config"]["preset"])
    fit_wall: dict[str, float] = {}
    fit_machines: dict[str, set] = {}
    for f in fits:
        fit_wall[f.attack] = fit_wall.get(f.attack, 0.0) + (f.meta.get("wall_s") or 0.0)
        fit_machines.setdefault(f.attack, set()).add(str(f.meta.get("machine", ""))[:80])
    lines = [
        f"# Reproducing the {env} board",
        "",
        "Everything on the board was produced by robbench's own code from this repository; the results home",
        "beside this note (`results-home/`) holds every per-episode return, the agents and the fitted attacks.",
        "",
        "## Commands",
        "",
        "```bash",
        f"robbench train <method> {env} --seeds 0-2 --preset paper --home my-home   # every method below",
        f"robbench evaluate --agents all --attacks standard --home my-home           # {get_suite().id}",
        "robbench certify --agents all --method crown --home my-home",
        "robbench report --home my-home --compare-paper --format markdown",
        "```",
        "",
        "The standard suite's members and budgets: `robbench list attacks` and docs/standard-suite.md. Cells",
        "of other attacks (or settings) in the home count only towards the board's best-known column.",
        "",
        "## Budgets",
        "",
        "- Training: `paper` preset for every agent (976 × 2048 env steps; the protocol's budget).",
        "- Attacks: " + "; ".join(f"{a}: {', '.join(sorted(p))}" for a, p in sorted(presets.items()))
        + " (see `robbench list attacks`: `medium` trains 4 adversaries × 200k steps per victim, the paper "
        "216 × 1M/2M; robust Sarsa `quick`: 4 Q networks × 5 rollouts, the paper 30 × 30). Board cells trained "
        "below the paper's budget carry ⚠.",
        "- Evaluation: 50 episodes per cell, deterministic actions, seeds 1000000…1000049, protocol ε.",
        "",
        "## Machine and wall time",
        "",
        "Training ran on: " + ", ".join(sorted(m for m in machines if m)) + " (one torch thread per run).",
        "",
        "| agent | env steps | training wall time | steps/s | code version |",
        "|---|---|---|---|---|",
        *train_rows,
        "",
        f"Training total: {train_total / 3600:.2f} h of one core.",
        "",
        "| attack | cells | evaluation wall time | fitting wall time (all victims) | fitted on |",
        "|---|---|---|---|---|",
        *(f"| {a} | {len(walls)} | {sum(walls) / 60:.1f} min | {fit_wall.get(a, 0) / 60:.1f} min | "
          f"{'; '.join(sorted(fit_machines.get(a, {'—'})))} |" for a, walls in sorted(per_attack.items())),
        "",
    ]
    return "\n".join(lines)


ATTACK_ORDER = tuple(a for a in get_suite().attacks if a != "none")  # the suite's order, as on every board
README_START, README_END = "<!-- board:hopper:start -->", "<!-- board:hopper:end -->"


def _num(row: dict, attack: str) -> str:
    v = row.get(f"{attack}_mean")
    return "—" if v is None else f"{v:.0f}"


def _paper_cell(p: dict | None) -> str:
    return f"{p['natural_mean']:.0f} / {p['worst_mean']:.0f} ({p['worst_attack']})" if p else "—"


def _worst(r: dict) -> str:
    if r.get("worst_mean") is None:
        return "—"
    return f"**{r['worst_mean']:.0f}** ({r.get('worst_member') or r['worst_attack']})"


def _best_known(r: dict) -> str:
    best, worst = r.get("best_known_mean"), r.get("worst_mean")
    if best is None:
        return "—"
    return "= worst" if worst is not None and best >= worst else f"{best:.0f} ({r['best_known_attack']})"


def compact_table(env: str) -> str:
    """Our rows beside the paper's, one line each (from reports/<env>/leaderboard.json)."""
    rows = json.loads((REPO / "reports" / env / "leaderboard.json").read_text())
    ours = [r for r in rows if r["source"] == OURS_LABEL]
    paper = {r["method"]: r for r in rows if r["source"] == PAPER_LABEL}
    attacks = [a for a in ATTACK_ORDER if any(f"{a}_mean" in r for r in ours)]
    head = ["#", "agent", "natural", *attacks, "worst", "best known", "certified dev. (CROWN mean)",
            "paper: natural / worst"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    for r in ours:
        p = paper.get(r["method"])
        cert = r.get("certified_mean_dev")
        out.append("| " + " | ".join([
            "—" if r["rank"] is None else str(r["rank"]), f"`{r['agent']}`", _num(r, "none"),
            *(_num(r, a) for a in attacks), _worst(r), _best_known(r),
            "—" if cert is None else f"{cert:.3g}", _paper_cell(p)]) + " |")
    return "\n".join(out)


def method_table(env: str) -> str:
    """One row per method: its median agent by worst-case return (the paper's selection rule) with
    every attack's mean, the seed count and the IQM worst case over seeds, beside the paper's row.
    Read from reports/<env>/leaderboard.json; ordered by the median agent's worst case."""
    rows = json.loads((REPO / "reports" / env / "leaderboard.json").read_text())
    ours = [r for r in rows if r["source"] == OURS_LABEL and r.get("method_aggregate") and r["rank"] is not None]
    paper = {r["method"]: r for r in rows if r["source"] == PAPER_LABEL}
    medians = [r for r in ours if r["agent"] == r["method_aggregate"]["median_agent"]]
    medians.sort(key=lambda r: (-r["worst_mean"], r["method"], r["preset"]))
    attacks = [a for a in ATTACK_ORDER if any(f"{a}_mean" in r for r in medians)]
    head = ["#", "method", "seeds (median agent's)", "natural", *attacks, "worst",
            "IQM worst over seeds [95% CI]", "certified dev. (CROWN mean)", "paper: natural / worst"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    for i, r in enumerate(medians, 1):
        agg, p = r["method_aggregate"], paper.get(r["method"])
        iqm = agg["iqm_worst"]
        cert = r.get("certified_mean_dev")
        out.append("| " + " | ".join([
            str(i), f"`{r['method']}`", f"{len(agg['seeds'])} (seed {r['seed']})", _num(r, "none"),
            *(_num(r, a) for a in attacks), _worst(r),
            f"{iqm['estimate']:.0f} [{iqm['low']:.0f}, {iqm['high']:.0f}]" if len(agg["seeds"]) > 1 else "—",
            "—" if cert is None else f"{cert:.3g}",
            _paper_cell(p)]) + " |")
    return "\n".join(out)


def ranking_block(env: str) -> str:
    """The paper's headline method against each other one, published lead vs ours (leaderboard.json)."""
    rows = json.loads((REPO / "reports" / env / "leaderboard.json").read_text())
    rec = next((r for r in rows if r["source"] == "ranking vs published"), None)
    if rec is None:
        return ""
    names = {m["method"]: m for m in rec["methods"]}
    out = ["| pair (worst case) | paper: lead | ours: lead, median agents (seeds) | ours: lead, IQM | "
           "Welch p on per-seed worst cases (Holm) | order |",
           "|---|---|---|---|---|---|"]

    def ptxt(test: dict | None) -> str:
        p = (test or {}).get("pvalue_holm")
        return "—" if p is None else ("<1e-4" if p < 1e-4 else f"{p:.2g}")

    for c in rec["claims"]:
        top, other = names[c["top"]], names[c["other"]]
        out.append(f"| {c['top']} vs {c['other']} | {c['paper_gap']:+.0f} | {c['our_gap']:+.0f} "
                   f"({len(top['our_seeds'])} vs {len(other['our_seeds'])}) | {c['our_iqm_gap']:+.0f} | "
                   f"{ptxt(c['welch'])} | {c['verdict']} |")
    tau = rec["kendall_tau"]
    out += ["", f"Kendall's τ between the paper's method ranking and ours: "
                f"{'undefined' if tau is None else f'{tau:+.2f}'}; {rec['pairs_agree']} of {rec['pairs_total']} "
                "method pairs ordered as in the paper."]
    return "\n".join(out)


def write_index(envs: list[str]) -> None:
    lines = ["# Published boards", "",
             "Each board: `leaderboard.md` (with the paper's rows, significance tests, seed aggregates and "
             "trust flags), `.json`, `.html`, `.csv`, `.tex`; `REPRODUCE.md` (commands, budgets, machine, wall "
             "time); `results-home/` (every per-episode return, the agents and the fitted attacks). The agents "
             "are shipped as the zoo (`robbench zoo list`, `robbench.load_agent(\"hopper/barppo/0\")`).", ""]
    for env in envs:
        lines += [f"## {env}", "", f"[board](./{env}/leaderboard.md) · [html](./{env}/leaderboard.html) · "
                  f"[json](./{env}/leaderboard.json) · [reproduce](./{env}/REPRODUCE.md)", "", compact_table(env), ""]
        ranking = ranking_block(env)
        if ranking:
            discussion = (REPO / "reports" / env / "vs-paper.md").exists()
            lines += ["Our ranking against the paper's (full view in the board" +
                      ("; what agrees, what does not and why: [vs-paper.md](./" + env + "/vs-paper.md)"
                       if discussion else "") + "):", "", ranking, ""]
    (REPO / "reports" / "README.md").write_text("\n".join(lines))
    readme = REPO / "README.md"
    text = readme.read_text()
    if README_START in text and README_END in text and "hopper" in envs:
        head, rest = text.split(README_START, 1)
        _, tail = rest.split(README_END, 1)
        readme.write_text(head + README_START + "\n" + readme_block() + "\n" + README_END + tail)


def readme_block(env: str = "hopper") -> str:
    """What the top-level README shows between its board markers: one row per method, the link to
    every agent's row, and the ranking against the paper's."""
    ranking = ranking_block(env)
    return (method_table(env) + f"\n\nEvery agent (each seed) and every view: [`reports/{env}/leaderboard.md`]"
            f"(reports/{env}/leaderboard.md)." + ("\n\nOur ranking against the paper's:\n\n" + ranking if ranking else ""))


def main() -> None:
    homes = {}
    for arg in sys.argv[1:]:
        env, _, path = arg.partition("=")
        homes[env] = Path(path).resolve()
    for env, src in homes.items():
        out = REPO / "reports" / env
        out.mkdir(parents=True, exist_ok=True)
        dst = out / "results-home"
        snapshot(src, dst)
        for fmt, ext in (("markdown", "md"), ("json", "json"), ("html", "html"), ("csv", "csv"), ("latex", "tex")):
            robbench("report", "--home", str(dst), "--format", fmt, "--compare-paper", "--out", str(out / f"leaderboard.{ext}"))
        (out / "REPRODUCE.md").write_text(reproduction_note(env, dst))
        print(f"published {env}: {out}")
    published = sorted(p.parent for p in (REPO / "reports").glob("*/results-home/results.sqlite"))
    write_index([h.parent.name for h in published])
    args = [a for h in published for a in ("--home", str(h))]
    robbench("zoo", "export", *args)
    print(robbench("zoo", "list"))


if __name__ == "__main__":
    main()
