"""Job cost estimates (robbench/cost.py): the progress bar's ETA weighs fits above evaluations."""

from robbench.cost import DEFAULT_S, estimate_seconds
from robbench.grid import attack_jobs, train_jobs
from robbench.suite import get_suite


def _suite_jobs():
    suite = get_suite()
    params = {n: suite.params(n) for n in suite.attacks if suite.params(n)}
    return attack_jobs({"hopper/ppo/paper/0": ()}, suite.attacks, params, 50, None)


def test_a_learned_fit_is_estimated_above_an_evaluation_and_natural_is_cheapest():
    jobs = _suite_jobs()
    cost = {(j.kind, j.spec["attack"]): estimate_seconds(j.kind, j.spec) for j in jobs}
    assert cost[("fit", "sa_rl")] > 10 * cost[("evaluate", "sa_rl")]
    assert cost[("fit", "pa_ad")] > cost[("fit", "rs")] > 0
    assert cost[("evaluate", "none")] < cost[("evaluate", "mad")] < cost[("evaluate", "apgd_mad")]
    assert all(c != DEFAULT_S for c in cost.values())  # every suite job has a real estimate


def test_training_cost_scales_with_the_budget_and_bad_specs_fall_back():
    (_, small), (_, big) = [next(iter(train_jobs(["ppo"], ["hopper"], [0], preset, None, 8, {})))
                            for preset in ("smoke", "paper")]
    assert estimate_seconds("train", big.spec) > 50 * estimate_seconds("train", small.spec)
    assert estimate_seconds("evaluate", {"attack": "no-such-attack"}) == DEFAULT_S


def test_the_director_fit_costs_its_screening_plus_its_search_and_grows_with_it():
    jobs = _suite_jobs()
    cost = {(j.kind, j.spec["attack"]): estimate_seconds(j.kind, j.spec) for j in jobs}
    assert cost[("fit", "ars_director")] > 3 * cost[("fit", "targeted")]
    spec = next(j.spec for j in jobs if j.kind == "fit" and j.spec["attack"] == "ars_director")
    longer = {**spec, "params": {**(spec.get("params") or {}), "iterations": 30}}
    assert estimate_seconds("fit", longer) > 1.8 * (cost[("fit", "ars_director")] - cost[("fit", "targeted")])
