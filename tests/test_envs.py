"""Vector envs, normalization statistics and env-id checks."""

import numpy as np
import pytest

from mcpo.config import ConfigError
from mcpo.envs import RunningMeanStd, check_env_id, env_seeds, make_vec_env


def _run(vec, steps, seed=3):
    obs = [vec.reset(env_seeds(seed, 0, vec.num_envs))]
    rng = np.random.default_rng(0)
    out = []
    for _ in range(steps):
        a = rng.integers(0, 2, vec.num_envs)
        out.append(vec.step(a))
    return obs, out


@pytest.mark.parametrize("other", ["gym-sync", "async"])
def test_our_sync_vec_env_matches_gymnasium_same_step(other):
    ours, ref = make_vec_env("CartPole-v1", 3, "sync"), make_vec_env("CartPole-v1", 3, other)
    try:
        (o1, s1), (o2, s2) = _run(ours, 300), _run(ref, 300)
    finally:
        ours.close()
        ref.close()
    np.testing.assert_array_equal(o1[0], o2[0])
    n_done = 0
    for a, b in zip(s1, s2):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
        n_done += int((a[2] | a[3]).sum())
    assert n_done > 10  # the comparison covered many autoresets


def test_running_mean_std_matches_numpy_over_batches():
    rng = np.random.default_rng(0)
    data = rng.normal(3.0, 2.0, (1000, 4))
    rms = RunningMeanStd((4,), epsilon=0.0)
    rms.count = 0.0
    i = 0
    for size in [1, 7, 1, 100, 391, 500]:
        rms.update(data[i:i + size])
        i += size
    np.testing.assert_allclose(rms.mean, data.mean(0), rtol=1e-10)
    np.testing.assert_allclose(rms.var, data.var(0), rtol=1e-10)


def test_env_seeds_depend_on_seed_and_iteration():
    assert env_seeds(1, 0, 4) == env_seeds(1, 0, 4)
    assert env_seeds(1, 0, 4) != env_seeds(1, 1, 4)
    assert env_seeds(1, 0, 4) != env_seeds(2, 0, 4)
    assert len(set(env_seeds(1, 0, 4))) == 4


def test_unknown_env_id_suggests_close_match():
    with pytest.raises(ConfigError, match="Did you mean 'Pendulum-v1'"):
        check_env_id("Pendulm-v1")
    check_env_id("CartPole-v1")


def test_running_mean_std_scalar_fast_path_equals_the_batch_update():
    xs = np.random.default_rng(0).normal(3.0, 2.0, 500)
    a, b = RunningMeanStd(()), RunningMeanStd(())
    for x in xs:
        a.update(np.array([x]))
        b.update_one(float(x))
    assert (a.mean, a.var, a.count) == (b.mean, b.var, b.count)  # bit-identical
    assert abs(b.mean - xs.mean()) < 1e-3 and abs(b.var - xs.var()) < 1e-2  # epsilon prior
