"""Leaderboard views (robbench/report/): ranking, significance, seed aggregates, trust flags,
published rows, and the markdown / csv / json / latex / html outputs.

Results homes are synthetic and built through the public API (`register_agent` + `write_cell`),
so every number is known; one home runs the real pipeline (smoke agent + `evaluate_cell`).
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from robbench import report, stats
from robbench.cli import app
from robbench.evaluate import evaluate_cell
from robbench.store import ResultsStore, cell_key
from robbench.train import train_agent

runner = CliRunner()
EPS = 0.075
BASE_SEED = 1_000_000
PAPER_STEPS = 976 * 2048
CHROMIUM = "/usr/bin/chromium"


# ----------------------------------------------------------------------------------- builders
def add_agent(store: ResultsStore, method: str, seed: int, preset: str = "paper", env: str = "hopper"):
    """Register an agent record; the report never loads the checkpoint, any file will do."""
    path = store.agent_path(env, method, preset, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(f"{env}/{method}/{preset}/{seed}".encode())
    meta = {"agent_id": f"{env}/{method}/{preset}/{seed}", "method": method, "env": env, "seed": seed,
            "preset": preset, "budget": preset, "steps": PAPER_STEPS}
    return store.register_agent(meta, path)


def add_cell(store, rec, attack, returns, *, config=None, info=None, deterministic=True, eps=EPS):
    returns = np.asarray(returns, dtype=float)
    protocol = {"eps": eps, "episodes": int(returns.size), "base_seed": BASE_SEED, "max_steps": 1000,
                "deterministic": deterministic}
    config = {"eps": eps, **(config or {})}
    key = cell_key(rec.agent_id, rec.sha256, attack, config, protocol)
    store.write_cell(
        {"cell_key": key, "agent_id": rec.agent_id, "agent_sha256": rec.sha256, "env": rec.env, "attack": attack,
         "attack_config": config, "protocol": protocol, "eps": eps, "episodes": int(returns.size),
         "mean": float(returns.mean()), "std": float(returns.std()), "min": float(returns.min()),
         "max": float(returns.max()), "env_steps": int(returns.size) * 1000, "wall_s": 1.0,
         "info": {"code_version": "test", **(info or {})}},
        [(i, BASE_SEED + i, float(r), 1000) for i, r in enumerate(returns)],
    )
    return key


def normal(rng, mean, std, n=50):
    return rng.normal(mean, std, size=n)


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """hopper, ε 0.075 (an ad-hoc board: no row has the standard suite): ppo ×3 seeds, barppo ×2,
    sappo ×1 (worst by random), wocar ×1 (flagged cells), each under every attack of the board (ranked);
    radial ×1 without critic, rs, sa_rl (unranked); plus a 10-episode board and a stochastic board."""
    home = tmp_path_factory.mktemp("views")
    rng = np.random.default_rng(7)
    with ResultsStore(home) as st:
        for seed, (nat, crit) in enumerate([(3200, 1400), (3300, 900), (3100, 1200)]):
            rec = add_agent(st, "ppo", seed)
            add_cell(st, rec, "none", normal(rng, nat, 150))
            add_cell(st, rec, "random", normal(rng, nat - 300, 400), info={"max_action_change": 0.05})
            add_cell(st, rec, "critic", normal(rng, crit, 300), config={"steps": 10},
                     info={"max_action_change": 0.4})
        for seed, crit in enumerate([2600, 2400]):
            rec = add_agent(st, "barppo", seed)
            add_cell(st, rec, "none", normal(rng, 3600, 60))
            add_cell(st, rec, "random", normal(rng, 3550, 80), info={"max_action_change": 0.04})
            add_cell(st, rec, "critic", normal(rng, crit, 200), config={"steps": 10},
                     info={"max_action_change": 0.3})
            add_cell(st, rec, "rs", normal(rng, crit + 300, 200),
                     config={"train_steps": PAPER_STEPS, "paper_steps": PAPER_STEPS},
                     info={"max_action_change": 0.35})
        rec = add_agent(st, "sappo", 0)
        add_cell(st, rec, "none", normal(rng, 3400, 100))
        add_cell(st, rec, "random", normal(rng, 2000, 100))
        rec = add_agent(st, "wocar", 0)
        add_cell(st, rec, "none", normal(rng, 3500, 100))
        add_cell(st, rec, "critic", normal(rng, 3450, 100), config={"steps": 10}, info={"max_action_change": 0.0})
        add_cell(st, rec, "rs", normal(rng, 1800, 100), config={"train_steps": 20_000, "paper_steps": PAPER_STEPS})
        add_cell(st, rec, "sa_rl", normal(rng, 2000, 100), config={"budget": "quick"})
        # another board: 10 episodes; another: stochastic actions
        rec = add_agent(st, "ppo", 9, preset="quick")
        add_cell(st, rec, "none", normal(rng, 1000, 50, n=10))
        add_cell(st, rec, "critic", normal(rng, 500, 50, n=10))
        add_cell(st, rec, "none", normal(rng, 900, 50), deterministic=False)
        add_cell(st, rec, "critic", normal(rng, 400, 50), deterministic=False)
        # barppo is evaluated under every attack of the main board (the clean rows of the flag tests)
        extra = np.random.default_rng(8)
        for seed, crit in enumerate([2600, 2400]):
            rec = st.get_agent(f"hopper/barppo/paper/{seed}")
            add_cell(st, rec, "sa_rl", normal(extra, crit + 500, 200),
                     config={"train_steps": PAPER_STEPS, "paper_steps": PAPER_STEPS},
                     info={"max_action_change": 0.3})
        # ppo, sappo and wocar get every attack of the board too, so they are ranked (a row lacking an
        # attack another row has is listed unranked); ppo's worst stays critic, sappo's random
        for seed, crit in enumerate([1400, 900, 1200]):
            rec = st.get_agent(f"hopper/ppo/paper/{seed}")
            for attack, gap in (("rs", 600), ("sa_rl", 800)):
                add_cell(st, rec, attack, normal(extra, crit + gap, 200),
                         config={"train_steps": PAPER_STEPS, "paper_steps": PAPER_STEPS},
                         info={"max_action_change": 0.3})
        rec = st.get_agent("hopper/sappo/paper/0")
        add_cell(st, rec, "critic", normal(extra, 2900, 100), config={"steps": 10}, info={"max_action_change": 0.2})
        for attack, mean in (("rs", 2800), ("sa_rl", 3000)):
            add_cell(st, rec, attack, normal(extra, mean, 100),
                     config={"train_steps": PAPER_STEPS, "paper_steps": PAPER_STEPS}, info={"max_action_change": 0.2})
        add_cell(st, st.get_agent("hopper/wocar/paper/0"), "random", normal(extra, 3400, 100),
                 info={"max_action_change": 0.05})
        # radial lacks critic, rs and sa_rl: its worst case (random, ~3650) is above every other row's,
        # yet it is listed after them, unranked
        rec = add_agent(st, "radial", 0)
        add_cell(st, rec, "none", normal(extra, 3700, 50))
        add_cell(st, rec, "random", normal(extra, 3650, 50), info={"max_action_change": 0.05})
    return home


@pytest.fixture(scope="module")
def paper_csv(tmp_path_factory):
    """A small published-results file in the format of robbench/data/paper_results.csv."""
    cols = ["table", "env", "eps", "method", "natural_mean", "natural_std"]
    for a in report.PAPER_ATTACKS + ("worst",):
        cols += [f"{a}_mean", f"{a}_std"]
    cols.append("worst_case_robustness")
    rows = [["table1", "hopper", 0.075, "SPO", 3081, 638, *[2000, 100] * 6, 79, 2, -0.974],
            ["table2", "hopper", 0.075, "PPO", 3081, 638, *[2000, 100] * 5, 79, 2, 79, 2, -0.974],
            ["table2", "hopper", 0.075, "BAR", 3684, 20, *[3000, 50] * 4, 1340, 42, 1728, 62, 1340, 42, -0.636],
            ["table2", "walker2d", 0.05, "BAR", 4732, 86, *[4000, 50] * 6, 2699, 1192, -0.436]]
    path = tmp_path_factory.mktemp("paper") / "paper_results.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        w.writerows(rows)
    return path


def boards_of(home):
    with ResultsStore(home) as st:
        return report.build_boards(st)


def main_board(boards):
    return next(b for b in boards if not b.departures)


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


# --------------------------------------------------------------------------------- the boards
def test_one_board_per_protocol_ranked_by_worst_case(home):
    boards = boards_of(home)
    assert len(boards) == 3  # standard, 10 episodes, stochastic
    b = main_board(boards)
    assert b.suite == report.AD_HOC  # no row has the standard suite: every cell counts
    ranked = b.ranked
    assert [e.rank for e in ranked] == list(range(1, len(ranked) + 1)) and len(ranked) == 7
    worst = [e.worst[0] for e in ranked]
    assert worst == sorted(worst, reverse=True)
    assert b.entries[0].agent_id.startswith("hopper/barppo/")
    # the unranked row (radial lacks critic, rs, sa_rl) comes after every ranked row, though its worst is higher
    assert [e.agent_id for e in b.entries[len(ranked):]] == ["hopper/radial/paper/0"]
    radial = b.entries[-1]
    assert radial.rank is None and radial.missing == ["critic", "rs", "sa_rl"]
    assert radial.worst[0] > worst[0]
    for e in b.entries:  # the natural return is part of the worst case
        assert e.worst[0] <= e.natural
    # columns in the suite's order (none, random, mad, critic, ..., rs, sa_rl, pa_ad), not alphabetical
    assert b.attacks == ["none", "random", "critic", "rs", "sa_rl"]
    md = cli("report", "--home", home).output
    block = re.split(r"^### ", md, flags=re.M)[1 + boards.index(b)]
    rows = re.findall(r"^\| (\d+|—) \| `([^`]+)`", block, flags=re.M)
    assert [aid for _, aid in rows] == [e.agent_id for e in b.entries]
    assert [r for r, _ in rows] == [str(i) for i in range(1, len(ranked) + 1)] + ["—"]
    header = next(line for line in block.splitlines() if line.startswith("| # |"))
    assert "| natural | random | critic | rs | sa_rl | worst | worst-case robustness | best known |" in header


def test_significance_holm_pvalues_equal_stats_on_stored_returns(home):
    b = main_board(boards_of(home))
    sig = report.significance(b)
    top = b.entries[0]
    with ResultsStore(home) as st:
        cells = {(c["agent_id"], c["attack"]): c["cell_key"] for c in st.cells() if c["protocol"]["episodes"] == 50
                 and c["protocol"]["deterministic"]}

        def returns(agent_id, attack):
            return [e["ret"] for e in st.episodes(cells[(agent_id, attack)])]

        # representatives: the median agent by worst case for several seeds (stats.median_agent)
        ppo = [e for e in b.entries if e.method == "ppo"]
        median_seed = stats.median_agent({e.seed: e.worst[0] for e in ppo})
        comps = sig.comparisons
        ppo_comps = [c for c in comps if c.group == ("ppo", "paper")]
        assert {c.entry.seed for c in ppo_comps} == {median_seed}
        assert f"seed {median_seed}" in ppo_comps[0].selection
        assert {c.quantity for c in comps} == {"worst case", "natural"}
        welch, mwu = [], []
        for c in comps:
            a = returns(c.entry.agent_id, c.attack)
            t = returns(top.agent_id, c.top_attack)
            assert c.attack == (c.entry.worst[1] if c.quantity == "worst case" else "none")
            welch.append(stats.welch_t_test(a, t).pvalue)
            mwu.append(stats.mann_whitney_u(a, t).pvalue)
            assert c.welch.effect_size == pytest.approx(stats.hedges_g(a, t))
            assert c.ci.estimate == pytest.approx(np.mean(a))
            assert c.ci.low <= np.mean(a) <= c.ci.high
    assert [c.welch_holm for c in comps] == pytest.approx(list(stats.holm_bonferroni(welch).adjusted))
    assert [c.mwu_holm for c in comps] == pytest.approx(list(stats.holm_bonferroni(mwu).adjusted))
    assert sig.family_size == {"welch": len(comps), "mwu": len(comps)}
    # the top entry is never compared with itself; its own method (barppo, 2 seeds) is via its median
    assert all(c.entry is not top for c in comps)
    md = cli("report", "--home", home).output
    assert f"Significance against the top entry `{top.agent_id}`" in md


def test_seed_aggregates_median_agent_and_iqm(home):
    b = main_board(boards_of(home))
    aggs = {(a.method, a.preset): a for a in report.seed_aggregates(b)}
    ppo = aggs[("ppo", "paper")]
    worst = {e.seed: e.worst[0] for e in ppo.entries}
    assert ppo.seeds == [0, 1, 2] and ppo.median.seed == stats.median_agent(worst)
    ref = stats.iqm_ci({"hopper": [e.worst[0] for e in ppo.entries]}, seed=report.BOOTSTRAP_SEED)
    assert (ppo.worst_iqm.estimate, ppo.worst_iqm.low, ppo.worst_iqm.high) == pytest.approx(
        (ref.estimate, ref.low, ref.high))
    assert ppo.p_improvement is not None and 0.0 <= ppo.p_improvement.estimate <= 1.0
    assert aggs[("sappo", "paper")].p_improvement is None  # one seed: no probability of improvement
    assert ("radial", "paper") not in aggs  # unranked rows are not aggregated
    md = cli("report", "--home", home).output
    assert f"`{ppo.median.agent_id}` (seed {ppo.median.seed})" in md


# ------------------------------------------------------------------------------------- flags
def test_trust_flags_fire(home):
    boards = boards_of(home)
    b = main_board(boards)
    by_id = {e.agent_id: e for e in b.entries}
    assert dict(by_id["hopper/sappo/paper/0"].flags()) == {"random-worst": []}
    assert dict(by_id["hopper/radial/paper/0"].flags()) == {"random-worst": [],
                                                           "missing-attacks": ["critic", "rs", "sa_rl"]}
    wocar = by_id["hopper/wocar/paper/0"]
    assert [c for c, _ in wocar.cell_flags("critic")] == ["action-unmoved"]
    assert [c for c, _ in wocar.cell_flags("rs")] == ["under-budget"]
    assert [c for c, _ in wocar.cell_flags("sa_rl")] == ["under-budget"]  # budget preset "quick"
    assert dict(wocar.flags()) == {"under-budget": ["rs", "sa_rl"], "action-unmoved": ["critic"]}
    ppo = by_id["hopper/ppo/paper/0"]
    assert dict(ppo.flags()) == {}
    few = next(bb for bb in boards if bb.protocol["episodes"] == 10)
    assert dict(few.entries[0].flags()) == {"few-episodes": []}
    stoch = next(bb for bb in boards if not bb.protocol["deterministic"])
    assert dict(stoch.entries[0].flags()) == {"stochastic": []}
    md = cli("report", "--home", home).output
    assert "⚠ worst only by random" in md and "action never moved (critic)" in md
    assert "attack under budget (rs, sa_rl)" in md and "<50 episodes" in md and "stochastic eval" in md
    assert "incomplete suite, unranked (critic, rs, sa_rl)" in md
    assert "NON-STANDARD: 10 episodes" in md and "NON-STANDARD: stochastic actions" in md


def test_no_flags_on_a_clean_50_episode_row(home):
    b = main_board(boards_of(home))
    clean = [e for e in b.entries if e.method == "barppo"]
    assert len(clean) == 2
    for e in clean:
        assert e.flags() == [] and all(e.cell_flags(a) == [] for a in e.cells)
    md = cli("report", "--home", home).output
    row = next(line for line in md.splitlines() if f"`{clean[0].agent_id}`" in line and line.startswith("| 1 "))
    assert "⚠" not in row and row.rstrip().endswith("|  |")


# ----------------------------------------------------------------------------------- published
def test_compare_paper_rows_are_labelled_and_never_ranked(home, paper_csv):
    plain = cli("report", "--home", home).output
    md = cli("report", "--home", home, "--compare-paper", "--paper-csv", paper_csv)
    assert md.exit_code == 0, md.output
    md = md.output
    assert f"#### {report.PAPER_LABEL} — not ranked" in md
    # ours are ranked exactly as without the published rows
    ours = lambda text: re.findall(r"^\| (\d+) \| `([^`]+)`", text, flags=re.M)  # noqa: E731
    assert ours(md) == ours(plain)
    pub = [line for line in md.splitlines() if re.match(r"^\| (PPO \(= SPO\)|BAR \(= BARPO\)) \| \w+ \| table", line)]
    assert len(pub) == 2 * 3 and not any(re.match(r"^\| \d+ \|", line) for line in pub)
    assert "| PPO (= SPO) | ppo | table2 | 3081 ± 638 |" in md
    main_block = re.split(r"^### ", md, flags=re.M)[1]
    assert main_block.index("#### " + report.PAPER_LABEL) > main_block.index("| 1 | `")
    # the 10-episode board is hopper at the paper's ε: it gets the block too; walker2d rows never show
    assert "walker2d" not in md.split(report.PAPER_LABEL, 1)[1].split("###")[0]
    records = json.loads(cli("report", "--home", home, "--format", "json", "--compare-paper",
                             "--paper-csv", paper_csv).output)
    published = [r for r in records if r["source"] == report.PAPER_LABEL]
    assert published and all(r["rank"] is None for r in published)
    ours = [r for r in records if r["source"] == report.OURS_LABEL]
    assert all(isinstance(r["rank"], int) == r["complete"] for r in ours)  # only complete rows are ranked
    assert [r["agent"] for r in ours if r["rank"] is None] == ["hopper/radial/paper/0"]


def test_compare_paper_missing_csv_is_one_line(home, tmp_path):
    res = cli("report", "--home", home, "--compare-paper", "--paper-csv", tmp_path / "nope.csv")
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: --paper-csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    res = cli("report", "--home", home, "--compare-paper", "--paper-csv", bad)
    assert res.exit_code == 2 and "lack the expected columns" in res.output and "Traceback" not in res.output


def test_method_mapping_reads_the_real_paper_table():
    path = report.PAPER_CSV  # robbench/data/paper_results.csv, the paper's Tables 1-4
    rows = [r for r in report.load_paper_results(path) if r.env == "hopper"]
    got = {r.method_id: (r.table, r.natural[0], r.worst[0]) for r in rows}
    assert got["ppo"] == ("table2", 3081.0, 79.0) and got["barppo"] == ("table2", 3684.0, 1340.0)
    assert got["arppo"] == ("table3", 3699.0, 1130.0)  # ARPO (w g): with SPO guidance
    assert got["arppo-noguide"] == ("table1", 2101.0, 1001.0)  # the paper's plain "ARPO"
    assert got["barppo-noguide"][0] == "table4" and {"sappo", "radial", "wocar"} <= set(got)
    assert len(rows) == len(got) == 8


def test_ranking_against_the_paper_recomputes_from_stored_returns(home):
    from scipy.stats import kendalltau

    board = main_board(boards_of(home))
    report.attach_published([board], report.load_paper_results(report.PAPER_CSV))
    pr = report.paper_ranking(board)
    published = {r.method_id: r.worst[0] for r in board.published}
    medians = {a.method: a.median for a in report.seed_aggregates(board)}
    # every method both report, in the paper's order; ours is each method's median agent by worst case
    assert [x.method for x in pr.rows] == sorted(set(published) & set(medians), key=lambda m: -published[m])
    assert [x.method for x in pr.rows] == ["barppo", "sappo", "wocar", "ppo"]
    ours = {x.method: x.our_worst for x in pr.rows}
    assert ours == {m: medians[m].worst[0] for m in ours}
    assert [x.method for x in sorted(pr.rows, key=lambda x: x.our_rank)] == sorted(ours, key=lambda m: -ours[m])
    methods = [x.method for x in pr.rows]
    pairs = [(a, b) for i, a in enumerate(methods) for b in methods[i + 1:]]
    assert pr.pairs_total == len(pairs) == 6
    assert pr.pairs_agree == sum((ours[a] > ours[b]) == (published[a] > published[b]) for a, b in pairs)
    assert pr.kendall_tau == pytest.approx(kendalltau([published[m] for m in methods], [ours[m] for m in methods])[0])
    # pairs: the paper's headline (barppo, best of Table 2) against each other, with the training seed as the
    # unit: Welch and Mann-Whitney on the two methods' per-seed worst cases, each Holm-adjusted across the pairs
    aggs = {a.method: a for a in report.seed_aggregates(board)}
    per_seed = {m: [e.worst[0] for e in a.entries] for m, a in aggs.items()}
    assert [c.other.method for c in pr.claims] == ["sappo", "wocar", "ppo"]
    testable = [c for c in pr.claims if len(per_seed[c.other.method]) >= 2 and len(per_seed["barppo"]) >= 2]
    assert [c.welch is not None for c in pr.claims] == [c in testable for c in pr.claims]
    for name, fn, attr in (("welch", stats.welch_t_test, "welch_holm"), ("mwu", stats.mann_whitney_u, "mwu_holm")):
        raw = [fn(per_seed["barppo"], per_seed[c.other.method]).pvalue for c in testable]
        if raw:
            assert [getattr(c, attr) for c in testable] == pytest.approx(list(stats.holm_bonferroni(raw).adjusted))
    for c in pr.claims:
        assert c.our_gap == pytest.approx(ours["barppo"] - ours[c.other.method])
        assert c.iqm_gap == pytest.approx(aggs["barppo"].worst_iqm.estimate - aggs[c.other.method].worst_iqm.estimate)
        significant = c.welch_holm is not None and c.welch_holm < 0.05
        assert c.verdict == (("as in the paper" if c.our_gap > 0 else "reversed")
                             + ("" if significant else " (not significant)"))
    # an episode-level test would call every pair significant (50 episodes each); per seed, a method with a
    # single seed cannot be separated at all, and the verdict says so
    single = [c for c in pr.claims if c not in testable]
    assert all(c.welch_holm is None and c.verdict.endswith("(not significant)") for c in single)
    md = report.to_markdown([board])
    assert "#### Our ranking against the paper's" in md and report.ranking_summary(pr) in md
    rec = next(r for r in json.loads(report.to_json([board])) if r["source"] == "ranking vs published")
    assert [m["method"] for m in rec["methods"]] == methods and rec["pairs_agree"] == pr.pairs_agree
    # the headline is Table 2's best even when an ablation table publishes a higher worst case; a pair the
    # paper orders the other way round (negative lead) agrees when ours is negative too
    sappo_row = next(r for r in board.published if r.method_id == "sappo")
    sappo_row.table, sappo_row.worst = "table4", (5000.0, 0.0)
    pr = report.paper_ranking(board)
    assert pr.rows[0].method == "sappo" and pr.claims[0].top.method == "barppo"
    vs_sappo = next(c for c in pr.claims if c.other.method == "sappo")
    assert vs_sappo.paper_gap < 0 and vs_sappo.verdict.startswith(
        "as in the paper" if vs_sappo.our_gap < 0 else "reversed")
    # no published rows, or fewer than two methods in common: no ranking section
    board.published = [r for r in board.published if r.method_id == "ppo"]
    assert report.paper_ranking(board) is None
    assert "Our ranking against the paper's" not in report.to_markdown([board])


# ------------------------------------------------------------------------------- certificates
def test_certified_deviation_prefers_crown_and_says_so(tmp_path):
    with ResultsStore(tmp_path) as st:
        if not callable(getattr(st, "certificates", None)):
            pytest.skip("this store has no certificates table")
        rec = add_agent(st, "ppo", 0)
        add_cell(st, rec, "none", np.full(50, 1000.0))
        add_cell(st, rec, "critic", np.linspace(400, 600, 50), info={"max_action_change": 0.2})
        other = add_agent(st, "ppo", 1)
        add_cell(st, other, "none", np.full(50, 900.0))
        add_cell(st, other, "critic", np.linspace(300, 500, 50))
        for method, dev in (("ibp", 0.9), ("crown", 0.3), ("crown-ibp", 0.5)):
            st.write_certificate({
                "agent_id": rec.agent_id, "agent_sha256": rec.sha256, "method": method, "eps": EPS, "states": 100,
                "threshold": 0.1, "mean_dev": dev / 2, "max_dev": dev, "mean_sum_u2_sigma2": 1.0,
                "max_sum_u2_sigma2": 2.0, "frac_below": 0.5, "seconds_per_1000": 1.0,
                "soundness_checked_points": 1000, "info": {}})
    md = cli("report", "--home", tmp_path).output
    assert "| 0.15 / 0.3 (crown) |" in md
    row1 = next(line for line in md.splitlines() if "`hopper/ppo/paper/1`" in line and line.startswith("| 2 "))
    assert "| — |" in row1
    html_text = cli("report", "--home", tmp_path, "--format", "html").output
    assert html_text.count("<img") == 4 and "certified vs empirical action deviation" in html_text
    assert "performance profile over training seeds" in html_text  # the fourth: seeds as the unit


# ----------------------------------------------------------------------------------- formats
def test_json_one_record_per_entry_with_raw_returns(home):
    boards = boards_of(home)
    records = json.loads(cli("report", "--home", home, "--format", "json").output)
    assert len(records) == sum(len(b.entries) for b in boards)
    assert len({(r["env"], r["eps"], json.dumps(r["protocol"], sort_keys=True), r["agent"]) for r in records}) \
        == len(records)
    with ResultsStore(home) as st:
        for c in st.cells():
            rec = next(r for r in records if r["agent"] == c["agent_id"] and r["protocol"] == c["protocol"])
            stored = [e["ret"] for e in st.episodes(c["cell_key"])]
            assert rec["attacks"][c["attack"]]["returns"] == pytest.approx(stored)
    wocar = next(r for r in records if r["agent"] == "hopper/wocar/paper/0")
    assert {f["code"] for f in wocar["flags"]} == {"under-budget", "action-unmoved"}
    assert wocar["attacks"]["rs"]["flags"][0]["code"] == "under-budget"
    assert wocar["worst_attack"] == wocar["worst_member"] == "rs" and wocar["worst_mean"] == wocar["rs_mean"]
    assert wocar["best_known_mean"] == wocar["worst_mean"] and wocar["suite"] == report.AD_HOC
    assert wocar["converged"] is True and wocar["worst_by_budget"][-1]["worst_mean"] == wocar["worst_mean"]
    radial = next(r for r in records if r["agent"] == "hopper/radial/paper/0")
    assert radial["rank"] is None and radial["complete"] is False
    assert radial["missing_attacks"] == ["critic", "rs", "sa_rl"]
    assert radial["method_aggregate"] is None and radial["significance_vs_top"]["comparisons"] == []
    ppo = [r for r in records if r["method"] == "ppo" and r["preset"] == "paper"]
    assert len({r["method_aggregate"]["median_seed"] for r in ppo}) == 1
    assert sum(len(r["significance_vs_top"]["comparisons"]) for r in ppo) == 2  # only the median agent


def test_csv_has_flags_and_returns(home):
    rows = list(csv.DictReader(io.StringIO(cli("report", "--home", home, "--format", "csv").output)))
    assert all(r["source"] == "robbench" for r in rows)
    wocar = next(r for r in rows if r["agent"] == "hopper/wocar/paper/0")
    assert set(wocar["flags"].split()) == {"under-budget", "action-unmoved"}
    assert len(wocar["rs_returns"].split()) == 50
    radial = next(r for r in rows if r["agent"] == "hopper/radial/paper/0")
    assert radial["rank"] == "" and radial["complete"] == "False"
    assert radial["missing_attacks"].split() == ["critic", "rs", "sa_rl"] and "missing-attacks" in radial["flags"]
    assert float(wocar["best_known_mean"]) == float(wocar["worst_mean"])


def _tabular_rows(tex: str):
    for m in re.finditer(r"\\begin\{tabular\}\{([^}]*)\}(.*?)\\end\{tabular\}", tex, flags=re.S):
        yield m.group(1), [line for line in m.group(2).splitlines() if line.endswith("\\\\")]


def test_latex_tabulars_are_balanced(home, paper_csv):
    tex = cli("report", "--home", home, "--format", "latex", "--compare-paper", "--paper-csv", paper_csv).output
    for env_name in ("tabular", "table"):
        assert tex.count(f"\\begin{{{env_name}}}") == tex.count(f"\\end{{{env_name}}}") > 0
    n_tabulars = 0
    for align, rows in _tabular_rows(tex):
        n_tabulars += 1
        assert rows
        for row in rows:  # every row has as many cells as the column spec, none spills
            assert len(re.findall(r"(?<!\\)&", row)) == len(align) - 1, row
    assert n_tabulars == tex.count("\\begin{tabular}")
    body = re.sub(r"\\[{}%&_#$]", "", tex)  # escaped specials
    assert body.count("{") == body.count("}")
    assert not re.search(r"(?<!\\)[_#%&]", re.sub(r"^%.*$", "", body.replace("&", ""), flags=re.M))
    assert tex.isascii(), "non-ASCII left in the LaTeX output"
    assert "hopper/barppo/paper/" in tex and report.PAPER_LABEL.replace("%", "") in tex


def test_new_formats_get_their_extension_and_bad_format_is_one_line(home, tmp_path):
    for fmt, ext in (("latex", "tex"), ("html", "html")):
        res = cli("report", "--home", home, "--format", fmt, "--out", f"{tmp_path}/")
        assert res.exit_code == 0, res.output
        assert (tmp_path / f"leaderboard.{ext}").stat().st_size > 0
    res = cli("report", "--home", home, "--format", "pdf")
    assert res.exit_code == 2
    assert res.output.strip() == "error: unknown format 'pdf'; valid choices: csv, html, json, latex, markdown"


def test_real_pipeline_smoke_agent(tmp_path):
    """train smoke → evaluate_cell (none, random; 3 episodes) → every format renders, flags fire."""
    with ResultsStore(tmp_path) as st:
        train_agent(st, "ppo", "hopper", seed=0, preset="smoke")
        for attack in ("none", "random"):
            evaluate_cell(st, "hopper/ppo/smoke/0", attack, episodes=3)
        text = {fmt: report.render(st, fmt) for fmt in report.FORMATS}
        (board,) = report.build_boards(st)
    (e,) = board.entries
    assert board.suite == report.AD_HOC and e.rank == 1 and e.worst[0] <= e.natural
    # the worst case is random's mean when noise lowered the return, else the natural return
    assert e.worst == min((e.cells["random"]["mean"], "random"), (e.natural, "none"))
    by_random = e.worst[1] == "random"
    flags = "⚠ <50 episodes" + ("; worst only by random" if by_random else "")
    assert f"| {flags} |" in text["markdown"]
    record = json.loads(text["json"])[0]
    assert [f["code"] for f in record["flags"]] == ["few-episodes"] + (["random-worst"] if by_random else [])
    assert "<table" in text["html"] and "\\begin{tabular}" in text["latex"]


# ------------------------------------------------------------------------------ html, browser
def _chromium(*args, user_dir: Path) -> subprocess.CompletedProcess:
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={user_dir}", "--hide-scrollbars"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120)


def test_html_is_self_contained(home, paper_csv):
    page = cli("report", "--home", home, "--format", "html", "--compare-paper", "--paper-csv", paper_csv).output
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert not re.search(r"""(src|href)=["'](https?:|//|file:)""", page), "external resource in the page"
    images = re.findall(r'<img alt="[^"]+" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == page.count("<img") >= 6  # Figure-5 view + per-attack boxes on 3 boards
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    assert "no certificates for the agents of this board" in page


def test_html_loads_in_headless_chromium(home, paper_csv, tmp_path):
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"{CHROMIUM} not installed (CI: apt-get install -y --no-install-recommends chromium)")
    page = tmp_path / "board.html"
    res = cli("report", "--home", home, "--format", "html", "--compare-paper", "--paper-csv", paper_csv,
              "--out", page)
    assert res.exit_code == 0, res.output
    dom = _chromium("--dump-dom", page.as_uri(), user_dir=tmp_path / "profile1")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html_dom = dom.stdout
    boards = boards_of(home)
    assert html_dom.count('<table class="board">') == len(boards)
    assert html_dom.count('<table class="published">') == len(boards)  # all hopper, at the paper's ε
    assert html_dom.count("<img") >= 2 * len(boards)
    assert "robbench leaderboards" in html_dom and report.PAPER_LABEL in html_dom
    for e in boards[0].entries:
        assert e.agent_id in html_dom
    shot = tmp_path / "board.png"
    res = _chromium(f"--screenshot={shot}", "--window-size=1400,2400", page.as_uri(), user_dir=tmp_path / "profile2")
    assert res.returncode == 0, res.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000  # a rendered page, not a blank one



def test_boards_state_the_training_departures_of_the_methods_they_show(home):
    """radial is on the hopper board: its half-budget note is there; wocar's is HalfCheetah's only (and
    these agents record no training config: nothing to read a setting from); the 10-episode board has
    only ppo: no training departures at all."""
    boards = boards_of(home)
    main = main_board(boards)
    notes = report.training_notes(main)
    assert any("RADIAL" in n and "2000" in n for n in notes)
    assert not any("WocaR" in n for n in notes)
    md = report.to_markdown([main])
    assert "Training departures from the reference code" in md and "about half the reference budget" in md
    ppo_only = next(b for b in boards if {e.method for e in b.entries} == {"ppo"})
    assert report.training_notes(ppo_only) == []
    assert "Training departures" not in report.to_markdown([ppo_only])


def test_setting_departures_follow_each_agents_recorded_config(home):
    """WocaR's HalfCheetah learning rates and AR-PPO's PGD start are settings: an agent recorded with
    the reference's values carries no note, one without carries it, and a note held by only some of a
    method's agents names them."""
    import dataclasses

    from robbench.agents.arppo import ARPPO
    from robbench.registry import get_trainer
    from robbench.train import build_config

    main = main_board(boards_of(home))
    template = main.entries[0]
    reference_wocar = build_config("wocar", "halfcheetah")[0].to_dict()
    assert (reference_wocar["policy_lr"], reference_wocar["value_lr"], reference_wocar["entropy_coef"]) == (1e-4, 1e-3, 1e-4)
    old_wocar = dict(reference_wocar, policy_lr=3e-4, value_lr=1e-4, entropy_coef=0.0)
    reference_arppo = build_config("arppo", "halfcheetah")[0].to_dict()
    assert reference_arppo["trainer"]["pgd_start"] == "ball"
    old_arppo = dict(reference_arppo, trainer={k: v for k, v in reference_arppo["trainer"].items() if k != "pgd_start"})
    board = dataclasses.replace(main, env="halfcheetah", entries=[
        dataclasses.replace(template, agent_id=f"halfcheetah/{m}/paper/{s}", method=m, seed=s, config=c)
        for m, s, c in [("wocar", 0, old_wocar), ("wocar", 1, reference_wocar), ("wocar", 2, reference_wocar),
                        ("arppo", 0, old_arppo), ("arppo", 1, old_arppo)]])
    notes = report.training_notes(board)
    wocar = [n for n in notes if n.startswith("WocaR")]
    assert wocar == [get_trainer("wocar").departures("halfcheetah", old_wocar)[0]
                     + " (1 of 3 such agents: halfcheetah/wocar/paper/0)"]
    assert "policy_lr 0.0003" in wocar[0] and "policy_lr 0.0001" in wocar[0]
    assert ARPPO.STEP_START_NOTE in notes  # both arppo agents: no count
    board.entries = board.entries[1:3]
    assert report.training_notes(board) == []
    assert get_trainer("wocar").departures("hopper", old_wocar) == []  # the reference changes nothing there


def test_performance_profile_counts_each_methods_seeds_at_or_above_tau(home):
    main = main_board(boards_of(home))
    profiles = report.performance_profiles(main)
    aggs = {f"{a.method} ({a.preset})": a for a in report.seed_aggregates(main)}
    assert set(profiles) == set(aggs)
    for label, (taus, fracs) in profiles.items():
        worsts = [e.worst[0] for e in aggs[label].entries]
        assert fracs[0] == 1.0 and fracs[-1] == 0.0 and fracs == sorted(fracs, reverse=True)
        for tau in (*worsts, min(worsts) - 1, max(worsts) + 1):
            # the step function just below tau equals the fraction of seeds with worst ≥ tau
            i = max(j for j, t in enumerate(taus) if t < tau) if any(t < tau for t in taus) else 0
            assert fracs[i] == pytest.approx(sum(w >= tau for w in worsts) / len(worsts))
    assert "performance profile over training seeds" in report.to_html([main])


# ------------------------------------------------------------------------ the page, measured
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module's geometry checks (selenium + Debian's chromedriver)."""
    if not (Path(CHROMIUM).is_file() and Path(CHROMEDRIVER).is_file()):
        pytest.skip(f"{CHROMIUM} or {CHROMEDRIVER} not installed "
                    "(CI: apt-get install -y --no-install-recommends chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install -e '.[test]')")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--hide-scrollbars"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


MAIN_TABLE = "[...document.querySelectorAll('table.board')].reduce((a, b) => b.rows.length > a.rows.length ? b : a)"
"""The page's largest board: the main one (the 10-episode board comes first)."""
MEASURE = f"""
const t = {MAIN_TABLE}, box = t.parentNode.getBoundingClientRect();
return {{inner: window.innerWidth, box: [box.left, box.right], scroll: [t.parentNode.scrollWidth, t.parentNode.clientWidth],
        heads: [...t.tHead.rows[0].cells].map(th => {{const r = th.getBoundingClientRect();
                                                      return [th.textContent, r.left, r.right]}})}};
"""


def _set_width(driver, width: int) -> None:
    """Resize so that the page's viewport (not the window) is `width` px wide."""
    driver.set_window_size(width, 900)
    inner = driver.execute_script("return window.innerWidth")
    driver.set_window_size(2 * width - inner, 900)
    assert driver.execute_script("return window.innerWidth") == width


@pytest.fixture(scope="module")
def page(home, paper_csv, tmp_path_factory):
    """The page of the views home, as `robbench report --format html --compare-paper` writes it."""
    out = tmp_path_factory.mktemp("page") / "board.html"
    res = cli("report", "--home", home, "--format", "html", "--compare-paper", "--paper-csv", paper_csv, "--out", out)
    assert res.exit_code == 0, res.output
    return out


def test_board_keeps_its_ranking_columns_in_view(page, browser):
    """At 1280 px the ranking columns (worst above all) lie inside the viewport, first in the table; in a
    window too narrow for the whole table they stay in view while the per-attack columns scroll."""
    browser.get(page.as_uri())
    _set_width(browser, 1280)
    m = browser.execute_script(MEASURE)
    heads = {name: (left, right) for name, left, right in m["heads"]}
    assert [name for name, _, _ in m["heads"]][:len(report.RANKING_COLUMNS)] == list(report.RANKING_COLUMNS)
    for name in report.RANKING_COLUMNS:
        left, right = heads[name]
        assert 0 <= left < right <= m["inner"], (name, left, right, m["inner"])
    # narrower than the table: the per-attack columns scroll under the pinned ones, worst does not move
    _set_width(browser, 900)
    before = browser.execute_script(MEASURE)
    assert before["scroll"][0] > before["scroll"][1], "the board should overflow a 900-px window"
    browser.execute_script(f"const b = {MAIN_TABLE}.parentNode; b.scrollLeft = b.scrollWidth;")
    after = browser.execute_script(MEASURE)
    worst_before = next(h for h in before["heads"] if h[0] == "worst")
    worst_after = next(h for h in after["heads"] if h[0] == "worst")
    assert worst_after[1:] == pytest.approx(worst_before[1:], abs=1)
    assert after["box"][0] <= worst_after[1] < worst_after[2] <= after["box"][1]
    last_attack = next(h for h in after["heads"] if h[0] == "sa_rl")
    assert last_attack[2] <= after["box"][1] + 1  # scrolled into view...
    assert next(h for h in before["heads"] if h[0] == "sa_rl")[2] > before["box"][1]  # ...from outside it


def test_board_sorts_by_a_column_click(home, page, browser):
    browser.get(page.as_uri())
    _set_width(browser, 1280)
    column = "worst-case robustness"
    read = f"""
    const t = {MAIN_TABLE}, heads = [...t.tHead.rows[0].cells];
    const j = heads.findIndex(th => th.textContent === {json.dumps(column)});
    return [...t.tBodies[0].rows].map(r => parseFloat(r.cells[j].getAttribute('data-v')));
    """
    click = f"[...{MAIN_TABLE}.tHead.rows[0].cells].find(th => th.textContent === " \
            f"{json.dumps(column)}).click()"
    browser.execute_script(click)
    up = browser.execute_script(read)
    browser.execute_script(click)
    down = browser.execute_script(read)
    main = main_board(boards_of(home))
    assert up == sorted(e.robustness for e in main.entries) and down == sorted(up, reverse=True)


def test_every_view_lists_attacks_in_the_suite_order(home):
    """The model orders columns and each entry's cells by the suite, so the JSON attack records, the flag
    lists and the attack settings follow the columns (the store lists cells by name)."""
    from robbench.suite import get_suite

    main = main_board(boards_of(home))
    assert main.attacks == report.attack_order(main.attacks, get_suite().attacks)
    for e in main.entries:
        assert list(e.cells) == [a for a in main.attacks if a in e.cells]
    wocar = next(r for r in json.loads(report.to_json([main])) if r["agent"] == "hopper/wocar/paper/0")
    assert list(wocar["attacks"]) == ["none", "random", "critic", "rs", "sa_rl"]
    md = report.to_markdown([main])
    settings = md.split("Attack settings:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert settings and all(line.startswith("- ") for line in settings)
    named = [line[2:].split(":", 1)[0] for line in settings]
    assert named == sorted(named, key=main.attacks.index)
    assert "**worst-case robustness** = (worst − natural) / natural: the share of its natural return" in md


def test_renderers_read_one_analysis_per_board(home, paper_csv, monkeypatch):
    """Every bootstrap and test of a board runs once per rendering, in `analyse`: no renderer or plot
    recomputes them (they once did, eleven times over)."""
    boards = boards_of(home)
    report.attach_published(boards, report.load_paper_results(paper_csv))
    calls: list[str] = []
    for name in ("bootstrap_ci", "iqm_ci", "welch_t_test", "mann_whitney_u", "probability_of_improvement"):
        real = getattr(stats, name)
        monkeypatch.setattr(stats, name, lambda *a, _real=real, _name=name, **k: calls.append(_name) or _real(*a, **k))
    for b in boards:
        report.analyse(b)
    once = sorted(calls)
    assert once
    for fmt in ("markdown", "json", "latex", "html"):
        calls.clear()
        report.RENDERERS[fmt](boards)
        assert sorted(calls) == once, fmt
    calls.clear()
    report.to_csv(boards)
    assert calls == []  # numbers only: no analysis


def test_html_escapes_what_the_store_holds():
    from robbench.report.render_html import inline

    assert inline("<b>`a<b`</b> **x**") == "&lt;b&gt;<code>a&lt;b</code>&lt;/b&gt; <strong>x</strong>"


def test_every_format_renders_every_table_of_the_outline(home):
    """One outline: markdown, LaTeX and HTML show the same tables in the same order — LaTeX included the
    ranking against the paper and its claims, which it once lacked."""
    board = main_board(boards_of(home))
    report.attach_published([board], report.load_paper_results(report.PAPER_CSV))
    (bo,) = report.outline([board]).boards
    tables = [s for s in bo.sections if s.kind == "table"]
    assert {"aggregate", "board", "published", "ranking", "claims", "significance"} == {t.name for t in tables}
    md, tex, page = report.to_markdown([board]), report.to_latex([board]), report.to_html([board])
    lines = md.splitlines()
    md_heads = [lines[i] for i in range(len(lines) - 1) if lines[i + 1].startswith("|---")]
    assert md_heads == ["| " + " | ".join(t.header) + " |" for t in tables]
    captions = re.findall(r"\\caption\{(.*)\}", tex)
    assert captions == [report.latex_escape(t.caption) for t in tables]
    assert re.findall(r'<table class="(\w+)">', page) == [t.name for t in tables]
