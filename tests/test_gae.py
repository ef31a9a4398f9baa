"""GAE against hand-computed values; truncation bootstraps, termination does not; the rollout
never stores an autoreset step as a transition."""

from dataclasses import dataclass

import jax.numpy as jnp
import jax
import numpy as np
import pytest

import toy_envs
from mcpo.distributions import Categorical
from mcpo.envs import make_vec_env
from mcpo.networks import make_policy
from mcpo.rollout import Collector, Interrupted, Rollout, gae, make_prepare_batch

toy_envs.register()
GAMMA, LAM = 0.9, 0.8


def test_gae_hand_computed_with_termination_and_truncation():
    # one env, 4 steps: terminated at t=1, truncated at t=3 (time limit)
    rewards = jnp.array([[1.0], [2.0], [3.0], [4.0]])
    values = jnp.array([[0.5], [0.6], [0.7], [0.8]])
    # next-state values: V(s1); V(final obs of ep 1) = 9 (must be ignored: terminated);
    # V(s3); V(final obs of ep 2) = 2 (must be used: truncated)
    next_values = jnp.array([[0.6], [9.0], [0.8], [2.0]])
    terminated = jnp.array([[False], [True], [False], [False]])
    dones = jnp.array([[False], [True], [False], [True]])
    adv, ret = gae(rewards, values, next_values, terminated, dones, GAMMA, LAM)
    d0 = 1 + 0.9 * 0.6 - 0.5
    d1 = 2 - 0.6                    # no bootstrap on termination
    d2 = 3 + 0.9 * 0.8 - 0.7
    d3 = 4 + 0.9 * 2.0 - 0.8        # bootstrap from the final obs on truncation
    a3 = d3
    a2 = d2 + 0.9 * 0.8 * a3
    a1 = d1                         # the recursion does not cross the episode end
    a0 = d0 + 0.9 * 0.8 * a1
    np.testing.assert_allclose(np.array(adv)[:, 0], [a0, a1, a2, a3], rtol=1e-6)
    np.testing.assert_allclose(np.array(ret), np.array(adv) + np.array(values), rtol=1e-6)


@dataclass(frozen=True)
class ObsValuePolicy:
    """V(s) = s[0]; uniform categorical policy."""
    dist = Categorical(2)

    def value(self, critic, obs):
        return obs[..., 0]

    def dist_params(self, actor, obs):
        return jnp.zeros(obs.shape[:-1] + (2,))

    def dist_and_value(self, params, obs):
        return self.dist_params(params["actor"], obs), self.value(params, obs)

    def forward_only(self, fn, obs):
        return fn(obs)


def _rollout(terminated, truncated):
    T = 3
    obs = np.array([[[1.0]], [[2.0]], [[3.0]]], np.float32)            # V = 1, 2, 3
    final = np.zeros((T, 1, 1), np.float32)
    final[1, 0, 0] = 10.0                                              # V(final obs) = 10
    return Rollout(obs=obs, actions=np.zeros((T, 1), np.int32),
                   rewards=np.ones((T, 1), np.float32),
                   terminated=np.array(terminated).reshape(T, 1),
                   truncated=np.array(truncated).reshape(T, 1),
                   final_obs=final, last_obs=np.array([[4.0]], np.float32))


def test_prepare_batch_bootstraps_only_on_truncation():
    prepare = make_prepare_batch(ObsValuePolicy(), GAMMA, 1.0)
    trunc = prepare({"actor": {}, "critic": {}}, _rollout([False, False, False], [False, True, False]))
    term = prepare({"actor": {}, "critic": {}}, _rollout([False, True, False], [False, False, False]))
    # step 1 ends an episode either way; truncation adds gamma * V(final obs) = 0.9 * 10
    d1_trunc = 1 + 0.9 * 10 - 2
    d1_term = 1 - 2
    assert float(trunc.advantages[1]) == pytest.approx(d1_trunc)
    assert float(term.advantages[1]) == pytest.approx(d1_term)
    assert float(trunc.advantages[1] - term.advantages[1]) == pytest.approx(0.9 * 10)
    # the last step bootstraps from V(last obs) = 4; step 0 from V(s1) = 2 plus lambda=1 chain
    d2 = 1 + 0.9 * 4 - 3
    assert float(trunc.advantages[2]) == pytest.approx(d2)
    assert float(trunc.advantages[0]) == pytest.approx((1 + 0.9 * 2 - 1) + 0.9 * d1_trunc)
    assert float(term.advantages[0]) == pytest.approx((1 + 0.9 * 2 - 1) + 0.9 * d1_term)


def test_prepare_batch_skips_the_final_value_forward_without_truncation_and_changes_nothing():
    """Without a truncation in the rollout the jitted prepare drops V(final obs) (a termination
    never bootstraps); the batch is bit-identical to the one computed with it."""
    from mcpo.rollout import prepare_batch

    ro = _rollout([False, True, False], [False, False, False])
    params = {"actor": {}, "critic": {}}
    skipped = make_prepare_batch(ObsValuePolicy(), GAMMA, 0.95)(params, ro)
    full = jax.jit(lambda p, r: prepare_batch(ObsValuePolicy(), p, r, GAMMA, 0.95))(params, ro)
    for a, b in zip(skipped, full):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def _collector(env_id, T, E, norm=False):
    """A started Collector of T steps on E envs and a host copy of a fresh actor."""
    vec = make_vec_env(env_id, E)
    policy = make_policy(vec.single_observation_space, vec.single_action_space)
    c = Collector(vec, policy, num_steps=T, gamma=0.99, norm_obs=norm, norm_reward=norm,
                  clip_obs=10, clip_reward=10)
    c.start(0, 0)
    return c, jax.tree.map(np.asarray, policy.init(jax.random.PRNGKey(0))["actor"])


def _collect(env_id, T, E):
    c, actor = _collector(env_id, T, E)
    return c.collect(actor, np.random.default_rng(0))


def test_rollout_has_no_autoreset_transitions_and_marks_truncation():
    T, E = 13, 2
    ro, episodes = _collect("mcpo_test/Counter-v0", T, E)  # time limit 5, never terminates
    # every stored transition is a real env step (a reset step would carry reward 0)
    assert np.all(ro.rewards == 1.0)
    assert not ro.terminated.any()
    for e in range(E):
        t_in_ep = ro.obs[:, e, 0]
        np.testing.assert_array_equal(t_in_ep, np.arange(T) % 5)
        ends = np.flatnonzero(ro.truncated[:, e])
        np.testing.assert_array_equal(ends, [4, 9])
        # the final observation of each episode is its 5th step, not the next reset obs
        np.testing.assert_array_equal(ro.final_obs[ends, e, 0], [5, 5])
        np.testing.assert_array_equal(ro.final_obs[ends, e, 1], ro.obs[ends, e, 1])
        # and the observation right after an end starts a new episode
        np.testing.assert_array_equal(ro.obs[ends + 1, e, 1], ro.obs[ends, e, 1] + 1)
    assert [e.length for e in episodes] == [5] * 4
    assert [e.ret for e in episodes] == [5.0] * 4


def test_rollout_marks_termination_not_truncation():
    ro, episodes = _collect("mcpo_test/CounterTerm-v0", 7, 1)  # terminates at t = 3
    np.testing.assert_array_equal(np.flatnonzero(ro.terminated[:, 0]), [2, 5])
    assert not ro.truncated.any()
    assert np.all(ro.rewards == 1.0)


def test_episodes_that_span_rollouts_are_logged_whole_and_in_step_order():
    # Counter-v0: reward 1 per step, time limit 5; rollouts of 3 steps, so every episode
    # starts in one rollout and ends in another (or two later)
    c, actor = _collector("mcpo_test/Counter-v0", 3, 2)
    rng = np.random.default_rng(0)
    per_rollout = [c.collect(actor, rng)[1] for _ in range(4)]  # steps 1-12: ends at 5, 10
    assert [len(e) for e in per_rollout] == [0, 2, 0, 2]
    for eps in (per_rollout[1], per_rollout[3]):
        assert [(e.ret, e.length, e.success) for e in eps] == [(5.0, 5, False)] * 2
    # the episodes in flight are carried: 2 steps done after the end at step 10
    np.testing.assert_array_equal(c.ep_length, [2, 2])
    np.testing.assert_array_equal(c.ep_return, [2.0, 2.0])


def test_an_interrupted_rollout_leaves_the_statistics_as_they_were():
    c, actor = _collector("Pendulum-v1", 50, 1, norm=True)
    c.collect(actor, np.random.default_rng(0))
    before = c.state_dict()
    calls = iter(range(10**6))
    with pytest.raises(Interrupted):  # stop requested at the 20th step
        c.collect(actor, np.random.default_rng(1), should_stop=lambda: next(calls) == 19)
    after = c.state_dict()
    assert after["lost_episodes"] == before["lost_episodes"]
    for k in ("obs_rms", "ret_rms"):
        for name in ("mean", "var", "count"):
            np.testing.assert_array_equal(after[k][name], before[k][name])
    # and a completed rollout does change them (the check above can fail)
    c.collect(actor, np.random.default_rng(1))
    assert c.state_dict()["obs_rms"]["count"] > before["obs_rms"]["count"]
