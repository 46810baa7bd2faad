"""The standard attack suite (robbench/suite.py), the boards it ranks (robbench/report/), the attacks
it added (attacks/apgd.py, attacks/targeted.py, mad's unit weights) and their solver
(robbench.pgd.apgd_ascent).

Boards are built from synthetic results homes (`register_agent` + `write_cell`, as
tests/test_report_views.py does) whose cells carry the suite's own canonical configs
(`Suite.member_configs`), so every number is known; the attacks run on real tiny agents (the smoke
agent of tests/conftest.py, and a hand-built victim with one planted weakness).
"""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from robbench import report
from robbench.cli import app
from robbench.errors import RobbenchError
from robbench.evaluate import Protocol, evaluate
from robbench.filters import ObsFilter
from robbench.pgd import apgd_ascent
from robbench.policy import Agent, GaussianPolicy, ValueNet
from robbench.registry import attacks, get_attack
from robbench.store import ResultsStore, canonical_json, cell_key
from robbench.suite import STANDARD, get_suite
from robbench.threat import Victim, check_in_ball

EPS = 0.075  # Hopper's protocol ε
BASE_SEED = 1_000_000
EPISODES = 50
OBS_DIM, ACT_DIM = 11, 3
STANDARD_V1_FINGERPRINT = "eff3d70cfc09"
"""standard-v1 as released. A change to its members, their parameters or any member's defaults changes
this value: release it as a new version (standard-v2) instead of editing this line."""

torch.set_num_threads(1)
runner = CliRunner()


# ------------------------------------------------------------------------------------ the suite
def test_standard_v1_fingerprint_is_pinned():
    suite = get_suite("standard-v1")
    assert suite.fingerprint == STANDARD_V1_FINGERPRINT
    assert suite.id == f"standard-v1+{STANDARD_V1_FINGERPRINT}"
    assert get_suite("standard") is get_suite(STANDARD) is get_suite()  # the newest: tests/test_ars_director.py


def test_fingerprint_changes_with_a_members_parameters_or_order():
    suite = get_suite("standard-v1")
    members = list(suite.members)
    i = suite.attacks.index("rs")
    bigger = dataclasses.replace(suite, members=tuple(
        members[:i] + [("rs", (("preset", "medium"),))] + members[i + 1:]))
    assert bigger.params("rs") == {"preset": "medium"} and bigger.fingerprint != suite.fingerprint
    swapped = dataclasses.replace(suite, members=tuple([members[1], members[0], *members[2:]]))
    assert swapped.fingerprint != suite.fingerprint
    fewer = dataclasses.replace(suite, members=tuple(members[:-1]))
    assert fewer.fingerprint != suite.fingerprint
    assert dataclasses.replace(suite, members=tuple(members)).fingerprint == suite.fingerprint


def test_fingerprint_follows_the_members_code_defaults(monkeypatch):
    suite = get_suite("standard-v1")
    before = suite.fingerprint
    non_member = next(name for name in attacks() if name not in suite.attacks)
    cls = get_attack(non_member)
    defaults = cls.default_params()
    monkeypatch.setattr(cls, "default_params", classmethod(lambda c: {**defaults, "extra": 1}))
    assert suite.fingerprint == before  # an attack outside the suite is not part of it
    apgd = get_attack("apgd_mad")
    apgd_defaults = apgd.default_params()
    monkeypatch.setattr(apgd, "default_params", classmethod(lambda c: {**apgd_defaults, "steps": 21}))
    assert suite.fingerprint != before
    monkeypatch.undo()
    assert suite.fingerprint == before


def test_member_configs_are_the_cells_the_evaluator_writes():
    suite = get_suite()
    counts = suite.cell_counts(EPS)
    assert counts["none"] == counts["random"] == counts["mad"] == 1 and counts["targeted"] == 3
    (mad,) = suite.member_configs("mad", EPS)
    assert mad == canonical_json(get_attack("mad")(EPS).config()) and json.loads(mad)["weights"] == "unit"
    ranks = sorted(json.loads(c)["rank"] for c in suite.member_configs("targeted", EPS))
    assert ranks == [0, 1, 2]
    assert len({json.loads(c)["member"] for c in suite.member_configs("rs", EPS)}) == counts["rs"] > 1
    with pytest.raises(RobbenchError, match="not a member"):
        suite.params("no_such_attack")


def test_cli_lists_the_suite_id_and_every_member():
    res = runner.invoke(app, ["list", "attacks"], terminal_width=200)
    assert res.exit_code == 0, res.output
    suite = get_suite()
    assert suite.id in res.output
    table = res.output.split(suite.id, 1)[1]
    for name in suite.attacks:
        assert re.search(rf"│ {re.escape(name)}\s+│\s+{suite.cell_counts(1.0)[name]}\s+│", table), name


# -------------------------------------------------------------------------------- synthetic boards
def add_agent(store: ResultsStore, method: str, seed: int = 0, env: str = "hopper"):
    """Register an agent record; the report never loads the checkpoint, any file will do."""
    path = store.agent_path(env, method, "paper", seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(f"{env}/{method}/{seed}".encode())
    meta = {"agent_id": f"{env}/{method}/paper/{seed}", "method": method, "env": env, "seed": seed,
            "preset": "paper", "budget": "paper", "steps": 1_000_000}
    return store.register_agent(meta, path)


def add_cell(store, rec, attack, mean, config=None, info=None, n=EPISODES):
    """A cell of `n` episodes with returns evenly spread over mean ± 10; its recorded mean is `mean`."""
    returns = mean + np.linspace(-10.0, 10.0, n)
    protocol = {"eps": EPS, "episodes": n, "base_seed": BASE_SEED, "max_steps": 1000, "deterministic": True}
    config = config if config is not None else {"eps": EPS}
    key = cell_key(rec.agent_id, rec.sha256, attack, config, protocol)
    store.write_cell(
        {"cell_key": key, "agent_id": rec.agent_id, "agent_sha256": rec.sha256, "env": rec.env, "attack": attack,
         "attack_config": config, "protocol": protocol, "eps": EPS, "episodes": n, "mean": float(mean),
         "std": float(returns.std()), "min": float(returns.min()), "max": float(returns.max()),
         "env_steps": n * 1000, "wall_s": 1.0, "info": {"code_version": "test", **(info or {})}},
        [(i, BASE_SEED + i, float(r), 1000) for i, r in enumerate(returns)],
    )


def member_configs(attack: str) -> list[dict]:
    """The suite member's cell configs in member order (scan member / rank 0 first)."""
    cfgs = [json.loads(c) for c in get_suite().member_configs(attack, EPS)]
    return sorted(cfgs, key=lambda c: (c.get("member", c.get("rank", 0)), canonical_json(c)))


def add_suite(store, rec, natural: float, means: dict[str, float | list[float]] | None = None,
              default: float | None = None, skip: tuple[tuple[str, int], ...] = ()) -> None:
    """Every cell of the standard suite: `means[attack]` (one value, or one per member in member
    order), else `default` (natural − 500); (attack, member index) pairs in `skip` are not written."""
    means = means or {}
    default = natural - 500 if default is None else default
    for attack in get_suite().attacks:
        cfgs = member_configs(attack)
        for i, cfg in enumerate(cfgs):
            if (attack, i) in skip:
                continue
            if attack == "none":
                mean = natural
            else:
                m = means.get(attack, default)
                mean = m[i] if isinstance(m, list) else m
            info = {"member": f"axis 1− (rank {cfg['rank']})"} if attack == "targeted" else None
            add_cell(store, rec, attack, mean, cfg, info)


def build(home):
    with ResultsStore(home) as st:
        return report.build_boards(st)


def entries_by_method(board):
    return {e.method: e for e in board.entries}


@pytest.fixture(scope="module")
def standard_home(tmp_path_factory):
    """One standard board (every row but `partial` has every suite cell):
    - `weak`: worst 1000 by targeted (natural 3000);
    - `strong`: worst 2000 by rs (natural 3500);
    - `unbeaten`: every attack's mean above its natural return (2500);
    - `partial`: no targeted rank 2 cell, every other attack 3600 (natural 3700): its worst beats every row;
    - `outside`: suite worst 2500 (critic); a mad cell with weights "learned" (1500) and an attack
      outside the suite (1700), neither in the worst case;
    - `nearly`: suite worst 2500; a mad "learned" cell at 2450 (2 % below: no flag);
    - `late`: rs members 0-2 at 2500, member 3 at 1500 (written first): the last doubling lowers it;
    - `early`: rs member 0 at 1500, members 1-3 at 2500: it is found in the first half."""
    home = tmp_path_factory.mktemp("standard")
    non_member = next(name for name in attacks() if name not in get_suite().attacks)
    with ResultsStore(home) as st:
        add_suite(st, add_agent(st, "weak"), 3000, {"targeted": [1000, 1200, 1400]}, default=2000)
        add_suite(st, add_agent(st, "strong"), 3500, {"rs": [2200, 2000, 2100, 2300]}, default=2600)
        add_suite(st, add_agent(st, "unbeaten"), 2500, default=2700)
        add_suite(st, add_agent(st, "partial"), 3700, default=3600, skip=(("targeted", 2),))
        rec = add_agent(st, "outside")
        add_suite(st, rec, 3000, {"critic": 2500}, default=2800)
        add_cell(st, rec, "mad", 1500, get_attack("mad")(EPS, weights="learned").config())
        add_cell(st, rec, non_member, 1700, get_attack(non_member)(EPS).config())
        rec = add_agent(st, "nearly")
        add_suite(st, rec, 3000, {"critic": 2500}, default=2800)
        add_cell(st, rec, "mad", 2450, get_attack("mad")(EPS, weights="learned").config())
        rec = add_agent(st, "late")
        rs = member_configs("rs")
        add_cell(st, rec, "rs", 1500, rs[3])
        add_suite(st, rec, 3000, {"rs": [2500, 2500, 2500, 1500]}, default=2600, skip=(("rs", 3),))
        add_suite(st, add_agent(st, "early"), 3000, {"rs": [1500, 2500, 2500, 2500]}, default=2600)
    return home


def board_row(md: str, agent_id: str) -> str:
    """The agent's row of the per-agent board (it starts with the rank; the method-level table above it
    names median agents too)."""
    return next(line for line in md.splitlines() if re.match(rf"^\| (\d+|—) \| `{re.escape(agent_id)}`", line))


@pytest.fixture(scope="module")
def standard_board(standard_home):
    (board,) = build(standard_home)
    return board


def test_a_board_with_a_full_suite_row_is_a_standard_board(standard_board):
    b = standard_board
    assert b.suite == get_suite().id and b.suite in b.title
    assert b.attacks == get_suite().attacks  # the suite's order, every member present
    by = entries_by_method(b)
    assert by["weak"].worst == (1000.0, "targeted") and by["weak"].worst_member == "targeted: axis 1− (rank 0)"
    assert by["strong"].worst == (2000.0, "rs")
    md = report.to_markdown([b])
    row = board_row(md, "hopper/weak/paper/0")
    assert "| 1000 (targeted: axis 1− (rank 0)) |" in row


def test_worst_never_exceeds_natural_on_a_standard_board(standard_board):
    for e in standard_board.entries:
        assert e.worst[0] <= e.natural, e.agent_id
        assert e.robustness <= 0
    unbeaten = entries_by_method(standard_board)["unbeaten"]
    assert unbeaten.worst == (2500.0, "none") and unbeaten.worst_member == "natural"
    assert unbeaten.robustness == 0 and unbeaten.rank is not None
    assert "random-worst" not in dict(unbeaten.flags())


def test_a_row_missing_one_suite_cell_is_unranked_and_listed_last(standard_board):
    b = standard_board
    partial = entries_by_method(b)["partial"]
    ranked = b.ranked
    assert partial.rank is None and partial not in ranked and partial.missing == ["targeted"]
    assert len(partial.cells["targeted"]["scan_members"]) == 2  # its other cells are still shown
    assert partial.worst[0] > max(e.worst[0] for e in ranked)  # it would top the board...
    assert [e.method for e in b.entries[len(ranked):]] == ["partial"]  # ...but comes after every ranked row
    assert [e.rank for e in ranked] == list(range(1, len(ranked) + 1))
    assert [e.worst[0] for e in ranked] == sorted((e.worst[0] for e in ranked), reverse=True)
    assert dict(partial.flags())["missing-attacks"] == ["targeted"]
    # only ranked rows are compared: the top entry and the seed aggregates never use it
    assert report.significance(b).top is ranked[0] and ranked[0].method != "partial"
    assert "partial" not in {a.method for a in report.seed_aggregates(b)}
    md = report.to_markdown([b])
    lines = [line for line in md.splitlines() if re.match(r"^\| (\d+|—) \| `", line)]
    assert lines[-1].startswith("| — | `hopper/partial/paper/0`")
    assert "incomplete suite, unranked (targeted)" in lines[-1]
    record = next(r for r in json.loads(report.to_json([b])) if r["agent"] == "hopper/partial/paper/0")
    assert record["rank"] is None and record["complete"] is False and record["missing_attacks"] == ["targeted"]


def test_cells_outside_the_suite_lower_best_known_not_worst(standard_board):
    by = entries_by_method(standard_board)
    outside = by["outside"]
    assert outside.worst == (2500.0, "critic")  # the suite's cells and natural only
    assert outside.best_known == (1500.0, "mad (outside the suite)")
    assert set(outside.extra_cells) == {"mad", next(a for a in attacks() if a not in get_suite().attacks)}
    assert outside.cells["mad"]["attack_config"]["weights"] == "unit"  # the suite's mad stays in the worst case
    assert "best-known-lower" in dict(outside.flags())
    assert not set(standard_board.attacks) - set(get_suite().attacks)  # no column for the outsider
    nearly = by["nearly"]  # 2450 is 2 % below 2500: recorded, not flagged
    assert nearly.worst == (2500.0, "critic") and nearly.best_known[0] == 2450.0
    assert "best-known-lower" not in dict(nearly.flags())
    for name in ("weak", "strong", "unbeaten"):  # without outside cells best known is the worst case
        assert by[name].best_known[0] == by[name].worst[0] and "best-known-lower" not in dict(by[name].flags())
    md = report.to_markdown([standard_board])
    row = board_row(md, "hopper/outside/paper/0")
    assert "| 2500 (critic) |" in row and "| 1500 (mad (outside the suite)) |" in row
    assert "best known lower" in row
    record = next(r for r in json.loads(report.to_json([standard_board])) if r["agent"] == "hopper/outside/paper/0")
    assert record["worst_mean"] == 2500.0 and record["best_known_mean"] == 1500.0
    assert record["extra_attacks"]["mad"]["config"]["weights"] == "learned"


def test_a_scan_whose_last_members_lower_the_worst_case_is_not_converged(standard_board):
    by = entries_by_method(standard_board)
    late, early = by["late"], by["early"]
    assert late.worst == early.worst == (1500.0, "rs")
    assert dict(late.budget_curve()) == {0.25: 2500.0, 0.5: 2500.0, 1.0: 1500.0}
    assert late.converged is False and "not-converged" in dict(late.flags())
    assert dict(early.budget_curve())[0.5] == 1500.0
    assert early.converged is True and "not-converged" not in dict(early.flags())
    assert by["weak"].converged is True  # its lowest targeted cell is rank 0
    record = next(r for r in json.loads(report.to_json([standard_board])) if r["agent"] == "hopper/late/paper/0")
    assert record["converged"] is False and any(f["code"] == "not-converged" for f in record["flags"])
    assert [p["worst_mean"] for p in record["worst_by_budget"]] == [2500.0, 2500.0, 1500.0]
    members = record["attacks"]["rs"]["scan_members"]
    assert [m["config"]["member"] for m in members] == sorted(m["config"]["member"] for m in members)
    assert [m["mean"] for m in members][-1] == 1500.0


def test_ad_hoc_board_counts_every_cell_and_ranks_complete_rows(tmp_path):
    """No row has the full suite: every cell counts (natural included), rows lacking an attack another
    row has are unranked and listed last, columns follow the suite's order then the alphabet."""
    critic = {"eps": EPS, "steps": 5, "step_size": 0.015}  # not the suite's critic
    with ResultsStore(tmp_path) as st:
        rec = add_agent(st, "a")
        for attack, mean in (("none", 3000), ("zeta", 2900), ("critic", 1200), ("random", 2800), ("alpha", 2700)):
            add_cell(st, rec, attack, mean, critic if attack == "critic" else None)
        rec = add_agent(st, "above")  # every attack above its natural return
        for attack, mean in (("none", 1000), ("zeta", 1100), ("critic", 1200), ("random", 1300), ("alpha", 1400)):
            add_cell(st, rec, attack, mean, critic if attack == "critic" else None)
        rec = add_agent(st, "lacking")  # no critic, no alpha: worst higher than every ranked row
        for attack, mean in (("none", 3500), ("zeta", 3400), ("random", 3300)):
            add_cell(st, rec, attack, mean)
    (b,) = build(tmp_path)
    assert b.suite == report.AD_HOC and "ad-hoc" in b.title
    assert b.attacks == ["none", "random", "critic", "alpha", "zeta"]
    by = entries_by_method(b)
    assert by["a"].worst == (1200.0, "critic")  # a non-suite config counts on an ad-hoc board
    assert by["above"].worst == (1000.0, "none") and by["above"].robustness == 0
    for e in b.entries:
        assert e.worst[0] <= e.natural
    assert [e.method for e in b.entries] == ["a", "above", "lacking"]
    assert [e.rank for e in b.entries] == [1, 2, None]
    assert by["lacking"].worst[0] > by["a"].worst[0]
    assert by["lacking"].missing == ["critic", "alpha"] and "missing-attacks" in dict(by["lacking"].flags())
    assert [e.method for e in b.ranked] == ["a", "above"]


# ---------------------------------------------------------------------------------- the attacks
NEW_ATTACKS = ("apgd_mad", "apgd_critic", "targeted", "mad")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def normal_states(n: int = 128, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, OBS_DIM, generator=gen(seed))


@pytest.fixture(scope="module")
def tiny_agent(smoke_home):
    with ResultsStore(smoke_home) as st:
        return st.load_agent("hopper/ppo/smoke/0")


@pytest.fixture(scope="module")
def fitted_targeted(tiny_agent):
    """`targeted` screened on real Hopper episodes of the smoke agent (1 episode per candidate, 3 steps)."""
    attack = get_attack("targeted")(EPS, screen_episodes=1, steps=3)
    stats = attack.fit(Victim(tiny_agent), gen(0))
    return attack, stats


def make(name: str, fitted_targeted, **params):
    if name == "targeted":
        attack, _ = fitted_targeted
        other = get_attack("targeted")(EPS, screen_episodes=1, steps=3, **params)
        other.load_state_dict(attack.state_dict())
        return other
    return get_attack(name)(EPS, **params)


@pytest.mark.parametrize("name", NEW_ATTACKS)
@pytest.mark.parametrize("where", ["normal", "boundary"])
def test_new_attacks_stay_in_the_ball(name, where, tiny_agent, fitted_targeted):
    states = normal_states() if where == "normal" else 10.0 * torch.sign(normal_states(seed=2))
    out = make(name, fitted_targeted).perturb(Victim(tiny_agent), states, gen())
    assert out.shape == states.shape and not out.requires_grad
    assert 0 < check_in_ball(out, states, EPS, name) <= EPS + 1e-6


@pytest.mark.parametrize("name", NEW_ATTACKS)
def test_new_attacks_are_deterministic_given_the_generator(name, tiny_agent, fitted_targeted):
    states = normal_states(64)
    attack = make(name, fitted_targeted)
    torch.manual_seed(1)
    first = attack.perturb(Victim(tiny_agent), states, gen(7))
    torch.manual_seed(2)  # the global RNG plays no part
    assert torch.equal(first, attack.perturb(Victim(tiny_agent), states, gen(7)))
    assert not torch.equal(first, attack.perturb(Victim(tiny_agent), states, gen(8)))


def test_apgd_mad_deviates_more_than_a_random_point_of_the_ball(tiny_agent):
    victim, states = Victim(tiny_agent), normal_states()
    with torch.no_grad():
        clean = tiny_agent.act(states)

    def deviation(x):
        with torch.no_grad():
            return (tiny_agent.act(x) - clean).pow(2).sum(-1)

    attacked = deviation(get_attack("apgd_mad")(EPS).perturb(victim, states, gen()))
    noise = deviation(get_attack("random")(EPS).perturb(victim, states, gen()))
    assert (attacked > 0).all()  # the clean point's deviation is 0
    assert attacked.mean() > 2 * noise.mean()
    assert (attacked > noise).float().mean() >= 0.9


def test_apgd_critic_lowers_the_value(tiny_agent):
    victim, states = Victim(tiny_agent), normal_states()
    attacked = get_attack("apgd_critic")(EPS).perturb(victim, states, gen())
    noise = get_attack("random")(EPS).perturb(victim, states, gen())
    with torch.no_grad():
        clean_v, attacked_v, noise_v = tiny_agent.value(states), tiny_agent.value(attacked), tiny_agent.value(noise)
    assert (attacked_v < clean_v).float().mean() >= 0.95
    assert (clean_v - attacked_v).mean() > 2 * (clean_v - noise_v).abs().mean()
    assert get_attack("apgd_critic").needs_critic


def test_mad_with_unit_weights_raises_the_unweighted_deviation(tiny_agent):
    victim, states = Victim(tiny_agent), normal_states()
    mad = get_attack("mad")(EPS)
    assert mad.params["weights"] == "unit"
    with torch.no_grad():
        deviation = (tiny_agent.act(mad.perturb(victim, states, gen())) - tiny_agent.act(states)).pow(2).sum(-1)
    assert (deviation > 0).all()


def test_targeted_pushes_the_action_along_its_chosen_directions(tiny_agent, fitted_targeted):
    attack, stats = fitted_targeted
    assert len(stats["candidates"]) == 2 * ACT_DIM + 2 ** ACT_DIM + 2 and len(stats["chosen"]) == 3
    scores = [stats["candidates"][name] for name in stats["chosen"]]
    assert scores == sorted(scores) and scores[0] == min(stats["candidates"].values())
    victim, states = Victim(tiny_agent), normal_states()
    with torch.no_grad():
        clean = tiny_agent.act(states)
    for rank in range(3):
        member = make("targeted", fitted_targeted, rank=rank)
        assert member.member_label() == f"{stats['chosen'][rank]} (rank {rank})"
        i = int(member.order[rank])
        kind = int(member.kinds[i])
        d = {0: member.directions[i].expand_as(clean), 1: -torch.sign(clean), 2: torch.sign(clean)}[kind]
        with torch.no_grad():
            push = ((tiny_agent.act(member.perturb(victim, states, gen())) - clean) * d).sum(-1)
        assert push.mean() > 0 and (push > 0).float().mean() >= 0.9, stats["chosen"][rank]


def test_targeted_needs_its_screening():
    with pytest.raises(RobbenchError, match="not screened"):
        get_attack("targeted")(EPS).perturb(None, normal_states(4), gen())


# --------------------------------------------------------------------------------- the solver
def concave(target: torch.Tensor):
    return lambda x: -(x - target).pow(2).sum(-1)


@pytest.fixture(scope="module")
def concave_problem():
    clean = torch.randn(256, 6, generator=gen(11))
    target = clean + 0.1 * torch.randn(256, 6, generator=gen(12))  # the optimum in or outside the ball
    return clean, target


def test_apgd_returns_the_best_iterate_inside_the_ball(concave_problem):
    clean, target = concave_problem
    seen_x, seen_f = [], []

    def objective(x):
        f = concave(target)(x)
        seen_x.append(x.detach().clone())
        seen_f.append(f.detach().clone())
        return f

    out = apgd_ascent(objective, clean, EPS, gen(3), steps=15, restarts=2)
    check_in_ball(out, clean, EPS, "apgd")
    assert all((x - clean).abs().max() <= EPS + 1e-6 for x in seen_x)  # every iterate too
    best = torch.stack(seen_f).max(0).values
    assert torch.equal(concave(target)(out), best)  # the best point it evaluated, per row


def test_apgd_more_restarts_are_never_worse(concave_problem):
    clean, target = concave_problem
    f = concave(target)
    values = [f(apgd_ascent(f, clean, EPS, gen(3), steps=10, restarts=r)) for r in (1, 2, 4)]
    assert all((b >= a).all() for a, b in zip(values, values[1:]))


def test_apgd_more_steps_help_on_average(concave_problem):
    clean, target = concave_problem
    f = concave(target)
    means = [f(apgd_ascent(f, clean, EPS, gen(3), steps=k)).mean() for k in (1, 5, 20, 50)]
    assert means == sorted(means) and means[-1] > means[0]


# ----------------------------------------------------------------------------- a planted weakness
PLANTED_AXIS = 1  # Hopper's leg joint


def planted_victim(axis: int = PLANTED_AXIS, gain: float = 3.0) -> Agent:
    """A Hopper victim whose μ is 0 on every clean state and moves only along `axis`:
    μ_axis(ŝ) = gain·tanh(tanh(2·u/ε)), u = ŝ_0 − s_0, every other weight 0. Its filter maps observation 0
    to exactly 0 (a 1e150 std), so only a perturbation moves it: pushing the leg joint at full torque
    (|μ| = 2.3 is clamped to 1) is the one thing any attack can do to it."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        policy, value = GaussianPolicy(OBS_DIM, ACT_DIM), ValueNet(OBS_DIM)
    with torch.no_grad():
        for p in policy.mean_net.parameters():
            p.zero_()
        policy.mean_net[0].weight[0, 0] = 2.0 / EPS
        policy.mean_net[2].weight[0, 0] = 1.0
        policy.mean_net[4].weight[axis, 0] = gain
    obs_filter = ObsFilter(OBS_DIM)
    obs_filter.stats.n = 2
    obs_filter.stats.m2 = np.ones(OBS_DIM)
    obs_filter.stats.m2[0] = 1e300
    obs_filter.frozen = True
    return Agent(policy, value, obs_filter, {"env": "hopper", "agent_id": "test/planted/0"})


def test_targeted_screening_ranks_the_planted_weakness_first():
    agent = planted_victim()
    states = torch.from_numpy(agent.normalize(np.random.default_rng(0).normal(size=(16, OBS_DIM)))).float()
    assert torch.equal(agent.act(states), torch.zeros(16, ACT_DIM))  # clean: the action never moves
    attack = get_attack("targeted")(EPS, screen_episodes=1, steps=3)
    stats = attack.fit(Victim(agent), gen(0))
    natural = evaluate(agent, get_attack("none")(EPS), Protocol(eps=EPS, episodes=1, base_seed=2_000_000)).returns[0]
    scores = stats["candidates"]
    # full negative torque on the leg topples Hopper at once: the weakness, ranked first
    assert stats["chosen"][0] == f"axis {PLANTED_AXIS}−"
    others = [v for k, v in scores.items() if not k.startswith("corner ") and k != stats["chosen"][0]]
    assert scores[stats["chosen"][0]] < min(natural, *others)
    # every corner that pushes the leg the same way is the same attack on this victim: the same return,
    # ranked just after the axis (its next members); the opposite push is a different one
    same = [k for k in scores if k.startswith("corner ") and k[len("corner ") + PLANTED_AXIS] == "−"]
    assert len(same) == 4 and {scores[k] for k in same} == {scores[stats["chosen"][0]]}
    assert set(stats["chosen"][1:]) <= set(same)
    assert scores[f"axis {PLANTED_AXIS}+"] != scores[stats["chosen"][0]]
    # the fitted rank-0 member, evaluated as a cell on the screening seed, reproduces the screened return
    result = evaluate(agent, attack, Protocol(eps=EPS, episodes=1, base_seed=2_000_000))
    assert result.returns[0] == pytest.approx(scores[stats["chosen"][0]], abs=0.01)
    assert attack.member_label() == f"axis {PLANTED_AXIS}− (rank 0)"


def test_the_suite_makes_one_screening_fit_per_agent_for_all_targeted_ranks():
    """targeted's ranks share one screening: one fit job, three evaluations that all wait on it."""
    from robbench.grid import attack_jobs

    suite = get_suite()
    jobs = attack_jobs({"hopper/ppo/paper/0": (), "hopper/ppo/paper/1": ()}, ["targeted", "rs"],
                       {"rs": suite.params("rs")}, 50, None)
    fits = [j for j in jobs if j.kind == "fit" and j.spec["attack"] == "targeted"]
    evals = [j for j in jobs if j.kind == "evaluate" and j.spec["attack"] == "targeted"]
    assert len(fits) == 2 and len(evals) == 6
    by_agent = {j.spec["agent_id"]: j.key for j in fits}
    assert all(e.deps == (by_agent[e.spec["agent_id"]],) for e in evals)
    assert len([j for j in jobs if j.kind == "fit" and j.spec["attack"] == "rs"]) == 8  # rs members: own fits
