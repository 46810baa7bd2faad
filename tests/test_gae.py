import numpy as np

from robbench.ppo import compute_gae


def test_gae_matches_hand_computation_with_termination_and_truncation():
    g, lam = 0.9, 0.8
    # one env, 4 steps: step 1 terminates, step 3 is truncated by the time limit.
    r = np.array([[1.0], [2.0], [0.5], [1.5]])
    v = np.array([[0.1], [0.2], [0.3], [0.4]])
    nv = np.array([[0.2], [9.0], [0.4], [0.7]])  # 9.0: value of a terminal state, must be ignored
    term = np.array([[False], [True], [False], [False]])
    trunc = np.array([[False], [False], [False], [True]])
    adv = compute_gae(r, v, nv, term, trunc, g, lam)[:, 0]
    d3 = 1.5 + g * 0.7 - 0.4  # truncation bootstraps from V(final obs)
    d2 = 0.5 + g * 0.4 - 0.3
    d1 = 2.0 - 0.2  # terminal: no bootstrap
    d0 = 1.0 + g * 0.2 - 0.1
    a3 = d3
    a2 = d2 + g * lam * a3
    a1 = d1  # trace stops at the episode boundary
    a0 = d0 + g * lam * a1
    np.testing.assert_allclose(adv, [a0, a1, a2, a3], rtol=1e-12)


def test_gae_is_vectorised_independently_across_envs():
    rng = np.random.default_rng(0)
    T, N = 16, 3
    r, v, nv = rng.normal(size=(T, N)), rng.normal(size=(T, N)), rng.normal(size=(T, N))
    term = rng.random((T, N)) < 0.1
    trunc = (rng.random((T, N)) < 0.1) & ~term
    both = compute_gae(r, v, nv, term, trunc, 0.99, 0.95)
    for i in range(N):
        one = compute_gae(r[:, i : i + 1], v[:, i : i + 1], nv[:, i : i + 1], term[:, i : i + 1],
                          trunc[:, i : i + 1], 0.99, 0.95)
        np.testing.assert_allclose(both[:, i], one[:, 0], rtol=1e-12)
