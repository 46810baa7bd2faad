"""`ars_director` (attacks/ars_director.py), the member standard-v2 added: its ARS step, the director
as an attack (ball, objective, determinism), the fit on a victim with a planted weakness (start,
held-out keep rule, artifact round trip) and resuming a killed fit."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from robbench import resume
from robbench.attacks.ars_director import ARSDirectorAttack, ars_step, director
from robbench.errors import RobbenchError
from robbench.registry import get_attack
from robbench.store import ResultsStore
from robbench.suite import STANDARD, get_suite
from robbench.threat import Victim, check_in_ball
from tests.test_suite import EPS, OBS_DIM, PLANTED_AXIS, planted_victim

torch.set_num_threads(1)
STANDARD_V2_FINGERPRINT = "bd3749b05e1f"
"""standard-v2 as released; change a member or a default only in a new version."""
STANDARD_V3_FINGERPRINT = "12e851f78b2f"
"""standard-v3 as released (v2 with three director restarts); change it only in a new version."""
TINY_FINALISTS = 2
TINY = dict(iterations=2, directions=2, top=1, episodes=1, check_episodes=1, screen_episodes=1, screen_steps=3,
            actor_steps=3, finalists=TINY_FINALISTS)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_standard_v2_is_v1_plus_the_director_and_is_pinned():
    v1, v2 = get_suite("standard-v1"), get_suite("standard-v2")
    assert v2.fingerprint == STANDARD_V2_FINGERPRINT
    assert [a for a in v2.attacks if a != "ars_director"] == v1.attacks
    assert v2.attacks.index("ars_director") == v2.attacks.index("targeted") + 1
    for attack in v1.attacks:  # every v1 cell is a v2 cell: a home moves to v2 by running one member
        assert v2.member_configs(attack, EPS) == v1.member_configs(attack, EPS)


def test_standard_v3_restarts_the_director_and_keeps_every_v2_cell():
    v2, v3 = get_suite("standard-v2"), get_suite("standard-v3")
    assert v3.fingerprint == STANDARD_V3_FINGERPRINT and STANDARD == "standard-v3" and get_suite() is v3
    assert v3.attacks == v2.attacks and v3.cell_counts(EPS)["ars_director"] == 3
    for attack in v2.attacks:  # every v2 cell is a v3 cell: v2's director is v3's first restart
        assert v2.member_configs(attack, EPS) <= v3.member_configs(attack, EPS)
    seeds = sorted(json.loads(c)["search_seed"] for c in v3.member_configs("ars_director", EPS))
    assert seeds == [4_000_000, 5_000_000, 6_000_000]


def test_a_list_of_search_seeds_is_a_scan_of_restarts_and_is_validated():
    cls = get_attack("ars_director")
    assert cls.scan_members({"search_seed": [7, 9]}) == [{"search_seed": 7}, {"search_seed": 9}]
    assert cls.scan_members({}) == [{}] and cls.scan_members({"search_seed": 7}) == [{}]
    ARSDirectorAttack(EPS, search_seed=[1, 2])  # a scan validates as its settings
    for bad in ([], [1, 1], [1, -2], [1, True], [1.5]):
        with pytest.raises(RobbenchError, match="search_seed as a list"):
            ARSDirectorAttack(EPS, search_seed=bad)
    with pytest.raises(RobbenchError, match="is a list"):  # one fit per member, never one for the scan
        ARSDirectorAttack(EPS, search_seed=[1, 2]).fit(None, gen())


def test_ars_step_descends_a_quadratic_and_stands_still_without_signal():
    target = torch.tensor([[1.0, -2.0], [0.5, 0.0]])
    loss = lambda t: float(((t - target) ** 2).sum())  # noqa: E731
    theta, g = torch.zeros(2, 2), gen(0)
    for _ in range(30):
        d = torch.randn((8, 2, 2), generator=g)
        theta, _ = ars_step(theta, d, np.array([loss(theta + 0.3 * x) for x in d]),
                            np.array([loss(theta - 0.3 * x) for x in d]), 4, 0.3)
    assert loss(theta) < 0.1 * loss(torch.zeros(2, 2))
    same, sigma = ars_step(theta, torch.randn((8, 2, 2), generator=g), np.ones(8), np.ones(8), 4, 0.3)
    assert sigma == 0.0 and torch.equal(same, theta)


@pytest.fixture(scope="module")
def tiny_agent(smoke_home):
    with ResultsStore(smoke_home) as st:
        return st.load_agent("hopper/ppo/smoke/0")


def fitted_by_hand(agent) -> ARSDirectorAttack:
    attack = get_attack("ars_director")(EPS)
    theta = torch.randn(3, 1 + OBS_DIM, generator=gen(3))
    attack.load_state_dict({"theta": theta, "start": torch.sign(theta[:, 0])})
    return attack


def test_the_director_stays_in_the_ball_pushes_along_its_direction_and_is_deterministic(tiny_agent):
    attack, victim = fitted_by_hand(tiny_agent), Victim(tiny_agent)
    states = torch.randn(128, OBS_DIM, generator=gen(1))
    out = attack.perturb(victim, states, gen(7))
    assert out.shape == states.shape and 0 < check_in_ball(out, states, EPS, "ars_director") <= EPS + 1e-6
    with torch.no_grad():
        gain = ((victim.mean(out) - victim.mean(states)) * director(attack.theta, states)).sum(-1)
    assert (gain > 0).float().mean() > 0.9  # the objective rises above its clean value 0
    torch.manual_seed(1)
    assert torch.equal(out, attack.perturb(victim, states, gen(7)))
    assert not torch.equal(out, attack.perturb(victim, states, gen(8)))
    with pytest.raises(Exception, match="fitted on 11-dim states"):
        attack.perturb(victim, states[:, :5], gen(7))


def test_fit_starts_at_the_planted_weakness_and_keeps_the_better_on_held_out_episodes():
    agent = planted_victim()
    attack = get_attack("ars_director")(EPS, **TINY)
    stats = attack.fit(Victim(agent), gen(0))
    assert stats["start"] == f"axis {PLANTED_AXIS}−" == stats["screening"]["chosen"][0]
    assert len(stats["per_iteration"]) == 2
    finalists = stats["finalists"]
    assert list(finalists)[:2] == ["start", "searched"] and 2 < len(finalists) <= 2 + TINY_FINALISTS
    # the kept director is the finalist with the lowest return on the check episodes (the start on ties)
    checks = [f["check"] for f in finalists.values()]
    assert finalists[stats["kept"]]["check"] == min(checks) and stats[f"check_start"] == checks[0]
    assert all("search" in f for n, f in finalists.items() if n.startswith("candidate "))
    assert attack.member_label() == f"director from axis {PLANTED_AXIS}−"
    again = get_attack("ars_director")(EPS, **TINY)
    again.load_state_dict(attack.state_dict())
    states = torch.from_numpy(agent.normalize(np.random.default_rng(0).normal(size=(8, OBS_DIM)))).float()
    assert torch.equal(again.perturb(Victim(agent), states, gen(1)), attack.perturb(Victim(agent), states, gen(1)))
    assert again.member_label() == attack.member_label()


def test_a_killed_fit_resumes_from_its_last_search_step_and_ends_as_an_uninterrupted_one(tmp_path):
    agent, params = planted_victim(), {**TINY, "iterations": 3}
    whole = get_attack("ars_director")(EPS, **params)
    whole.fit(Victim(agent), gen(0))

    class Killed(Exception):
        pass

    def kill_after_two(done, total, text):
        if done == 2:
            raise Killed

    point = resume.ResumePoint(tmp_path / "fit.safetensors", identity={"job": "ars"})
    with pytest.raises(Killed):
        get_attack("ars_director")(EPS, **params).fit(Victim(agent), gen(0), progress=kill_after_two, resume=point)
    point = resume.ResumePoint(tmp_path / "fit.safetensors", identity={"job": "ars"})
    resumed = get_attack("ars_director")(EPS, **params)
    stats = resumed.fit(Victim(agent), gen(0), resume=point)
    assert point.resumed_from == 2 and len(stats["per_iteration"]) == 3
    assert torch.equal(resumed.theta, whole.theta)  # the finalists survived the kill: the same one is kept


@pytest.mark.parametrize("bad", [{"top": 9}, {"noise": 0}, {"step": float("nan")}, {"iterations": 0},
                                 {"seed": -1}, {"search_seed": 1.5}])
def test_bad_parameters_are_one_line(bad):
    with pytest.raises(Exception, match="ars_director"):
        get_attack("ars_director")(EPS, **bad)


def test_a_hostile_artifact_is_refused():
    attack = get_attack("ars_director")(EPS)
    for tensors in ({"theta": torch.zeros(3, 12)}, {"theta": torch.full((3, 12), float("nan")), "start": torch.ones(3)},
                    {"theta": torch.zeros(3, 12), "start": torch.ones(2)}):
        with pytest.raises(Exception, match="ars_director artifact"):
            attack.load_state_dict(tensors)


def test_a_board_is_ranked_by_the_newest_suite_some_row_has_in_full(tmp_path):
    """v1-only rows: a standard-v1 board (all ranked); one row gains ars_director: a standard-v2 board on
    which that row alone is ranked, and the others are unranked and flagged missing it."""
    from robbench import report
    from tests.test_suite import add_agent, add_cell

    v1, v2 = get_suite("standard-v1"), get_suite("standard-v2")

    def add_v1(st, rec, natural, worst):
        for attack in v1.attacks:
            for cfg in sorted(v1.member_configs(attack, EPS)):
                add_cell(st, rec, attack, natural if attack == "none" else worst, json.loads(cfg))

    with ResultsStore(tmp_path) as st:
        a, b = add_agent(st, "alpha"), add_agent(st, "beta")
        add_v1(st, a, 3000, 2000)
        add_v1(st, b, 3000, 1500)
        (board,) = report.build_boards(st)
        assert board.suite == v1.id and v1.id in board.title and [e.method for e in board.ranked] == ["alpha", "beta"]
        assert "ars_director" not in board.attacks
        (cfg,) = v2.member_configs("ars_director", EPS)
        add_cell(st, b, "ars_director", 900, json.loads(cfg))
        (board,) = report.build_boards(st)
    assert board.suite == v2.id and v2.id in board.title
    by = {e.method: e for e in board.entries}
    assert [e.method for e in board.ranked] == ["beta"] and by["beta"].worst[0] == 900
    assert by["alpha"].rank is None and by["alpha"].missing == ["ars_director"]


def test_an_agent_without_a_critic_is_ranked_without_the_critic_members_and_says_so(tmp_path):
    """An imported agent with no value network: `critic` is skipped by the planner, so its row lacks that
    cell. It is still complete (the member does not apply), ranked, flagged, and the cell reads n/a."""
    from robbench import report
    from tests.test_suite import add_cell

    suite = get_suite()
    with ResultsStore(tmp_path) as st:
        recs = {}
        for method, has_critic in (("withcritic", True), ("nocritic", False)):
            path = st.agent_path("hopper", method, "paper", 0)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(method.encode())
            recs[method] = st.register_agent({"agent_id": f"hopper/{method}/paper/0", "method": method,
                                              "env": "hopper", "seed": 0, "preset": "paper", "budget": "paper",
                                              "steps": 1, "has_critic": has_critic}, path)
        for method, rec in recs.items():
            for attack in suite.attacks:
                if method == "nocritic" and get_attack(attack).needs_critic:
                    continue
                for cfg in sorted(suite.member_configs(attack, EPS)):
                    add_cell(st, rec, attack, 3000 if attack == "none" else 2000, json.loads(cfg))
        (board,) = report.build_boards(st)
    assert board.suite == suite.id
    by = {e.method: e for e in board.entries}
    assert by["nocritic"].rank is not None and by["nocritic"].missing == []
    assert by["nocritic"].not_applicable == ["critic"] and by["withcritic"].not_applicable == []
    assert ("no-critic", ["critic"]) in by["nocritic"].flags()
    md = report.to_markdown([board])
    assert "n/a (no critic)" in md and "no critic: critic attacks n/a" in md
    row = next(r for r in json.loads(report.to_json([board])) if r.get("agent") == "hopper/nocritic/paper/0")
    assert row["not_applicable_attacks"] == ["critic"] and row["complete"] is True
