import numpy as np

from robbench.filters import ObsFilter, RewardScaler, RunningMeanStd


def test_running_mean_std_matches_numpy_for_uneven_batches():
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.5, size=(1000, 5)) * np.arange(1, 6)
    rms = RunningMeanStd((5,))
    start = 0
    for size in [1, 2, 7, 64, 300, 626]:
        rms.update(data[start : start + size])
        start += size
    assert start == len(data)
    np.testing.assert_allclose(rms.mean, data.mean(0), rtol=1e-12)
    np.testing.assert_allclose(rms.var, data.var(0, ddof=1), rtol=1e-10)
    assert rms.n == 1000


def test_welford_one_at_a_time_equals_batch():
    rng = np.random.default_rng(1)
    data = rng.normal(size=(200, 3))
    a, b = RunningMeanStd((3,)), RunningMeanStd((3,))
    for row in data:
        a.update(row[None])
    b.update(data)
    np.testing.assert_allclose(a.mean, b.mean, rtol=1e-12)
    np.testing.assert_allclose(a.var, b.var, rtol=1e-10)


def test_obs_filter_normalises_clips_and_freezes():
    f = ObsFilter(2)
    data = np.array([[0.0, 1.0], [2.0, 1.0], [4.0, 1.0]])
    out = f(data)
    std = data.std(0, ddof=1)
    expected = np.clip((data - data.mean(0)) / (std + 1e-8), -10, 10)
    np.testing.assert_allclose(out, expected)
    assert f(np.array([[1e9, 1.0]]), update=False)[0, 0] == 10.0  # clipped to ±10
    n = f.stats.n
    f.frozen = True
    f(np.array([[5.0, 5.0]]))
    assert f.stats.n == n


def test_reward_scaler_divides_by_std_of_discounted_return_without_centering():
    gamma = 0.9
    scaler = RewardScaler(1, gamma)
    rewards = [1.0, 2.0, 3.0, 4.0]
    rets, out = [], []
    ret = 0.0
    for r in rewards:
        ret = gamma * ret + r
        rets.append(ret)
        out.append(scaler(np.array([r]))[0])
    expected_std = np.std(rets, ddof=1)
    assert np.isclose(out[-1], rewards[-1] / (expected_std + 1e-8))
    assert out[-1] > 0  # no mean subtraction
    scaler.reset(0)
    assert scaler.ret[0] == 0.0
