"""ACKTR: Kronecker factors against direct computations, the damped Kronecker inverse, the
KL-clipped step size, one update, config checks, learning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import (CARTPOLE_QUICK, cartpole_solved, PENDULUM_MIN_GAIN, PENDULUM_QUICK,
                      pendulum_gain, quick_train)

import mcpo
from mcpo.algos import acktr
from mcpo.config import ConfigError
from mcpo.distributions import Categorical, DiagGaussian
from mcpo.networks import MLPActorCritic, mlp
from mcpo.rollout import Batch

ONE_STEP = dict(update_epochs=1, num_minibatches=1)
DISTS = [Categorical(3), DiagGaussian(2)]


def setup(dist, hidden=(), B=32, seed=0):
    policy = MLPActorCritic(3, dist, hidden)
    k = jax.random.split(jax.random.PRNGKey(seed), 3)
    params = policy.init(k[0])
    params["actor"]["mlp"][-1]["w"] = params["actor"]["mlp"][-1]["w"] * 100.0
    obs = jax.random.normal(k[1], (B, 3))
    return policy, params, obs, k[2]


@pytest.mark.parametrize("hidden", [(), (5, 4)])
def test_mlp_with_taps_is_the_network_forward(hidden):
    policy, params, obs, _ = setup(Categorical(3), hidden)
    layers = params["actor"]["mlp"]
    zeros = [jnp.zeros((obs.shape[0], layer["b"].shape[0])) for layer in layers]
    out, inputs = acktr.mlp_with_taps(layers, obs, zeros)
    np.testing.assert_allclose(np.asarray(out), np.asarray(mlp(layers, obs)), rtol=1e-6)
    assert [x.shape[1] for x in inputs] == [layer["w"].shape[0] for layer in layers]


def test_factors_of_a_linear_softmax_policy_and_linear_critic_by_hand():
    """One dense layer each: A = E[[s,1][s,1]^T]; actor G = E[(onehot(a) - p)(...)^T] with
    a ~ pi(.|s); critic G = E[eps^2] with y = V(s) + eps (Gauss-Newton, sigma = 1)."""
    policy, params, obs, key = setup(Categorical(3))
    g, abar, (y, y_v) = acktr.sampled_fisher_taps(policy, params, obs, key)
    A, G = acktr.kronecker_factors(g, abar)
    s1 = np.concatenate([np.asarray(obs), np.ones((obs.shape[0], 1))], 1)
    A_direct = s1.T @ s1 / len(s1)
    logits = np.asarray(obs) @ np.asarray(params["actor"]["mlp"][0]["w"]) \
        + np.asarray(params["actor"]["mlp"][0]["b"])
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    r = np.eye(3)[np.asarray(y)] - p
    v = np.asarray(policy.value(params, obs))
    eps = np.asarray(y_v) - v
    np.testing.assert_allclose(np.asarray(A["actor"][0]), A_direct, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(A["critic"][0]), A_direct, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(G["actor"][0]), r.T @ r / len(r), rtol=1e-4,
                               atol=1e-6)
    np.testing.assert_allclose(np.asarray(G["critic"][0]), [[np.mean(eps ** 2)]], rtol=1e-4)
    # the samples are the model's own: actions vary, value targets scatter by N(0, 1)
    assert len(set(np.asarray(y).tolist())) > 1
    assert 0.3 < np.mean(eps ** 2) < 3.0


def test_factors_of_a_linear_gaussian_policy_by_hand():
    """mean = s W + b, log-std a bias with input 1: g_mean = (a - mu) / sigma^2,
    g_log_std = (a - mu)^2 / sigma^2 - 1."""
    policy, params, obs, key = setup(DiagGaussian(2))
    params["actor"]["log_std"] = jnp.array([-0.5, 0.3])
    g, abar, (y, _) = acktr.sampled_fisher_taps(policy, params, obs, key)
    A, G = acktr.kronecker_factors(g, abar)
    mu = np.asarray(obs) @ np.asarray(params["actor"]["mlp"][0]["w"]) \
        + np.asarray(params["actor"]["mlp"][0]["b"])
    var = np.exp(2 * np.array([-0.5, 0.3]))
    d = np.asarray(y) - mu
    g_mean, g_ls = d / var, d ** 2 / var - 1.0
    np.testing.assert_allclose(np.asarray(G["actor"][0]), g_mean.T @ g_mean / len(d),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(np.asarray(G["log_std"]), g_ls.T @ g_ls / len(d), rtol=1e-4,
                               atol=1e-6)
    np.testing.assert_allclose(np.asarray(A["log_std"]), [[1.0]])


@pytest.mark.parametrize("dist", DISTS, ids=lambda d: d.kind)
def test_per_example_kronecker_terms_are_the_per_example_gradients(dist):
    """For every layer of a two-hidden-layer MLP, a_bar_i g_i^T is exactly the gradient of
    log p(y_i|x_i) w.r.t. that layer's [W; b] (y the same samples), so A (x) G is the K-FAC
    approximation of the true per-layer Fisher E[vec(a_bar g^T) vec(a_bar g^T)^T]."""
    policy, params, obs, key = setup(dist, hidden=(5, 4), B=8)
    g, abar, (y, y_v) = acktr.sampled_fisher_taps(policy, params, obs, key)

    def loglik_i(p, o, a, t):
        d = policy.dist_params(p["actor"], o[None])
        v = policy.value(p, o[None])
        return policy.dist.log_prob(d, a[None])[0] - 0.5 * (v[0] - t) ** 2

    per_ex = jax.vmap(jax.grad(loglik_i), in_axes=(None, 0, 0, 0))(params, obs, y, y_v)
    blocks = jax.vmap(acktr.to_blocks)(per_ex)          # (B, in+1, out) per block
    for part in ("actor", "critic"):
        for i, (gi, ai) in enumerate(zip(g[part], abar[part])):
            outer = np.einsum("bi,bo->bio", np.asarray(ai), np.asarray(gi))
            np.testing.assert_allclose(outer, np.asarray(blocks[part][i]), rtol=1e-4,
                                       atol=1e-6)
    if "log_std" in g:
        np.testing.assert_allclose(np.asarray(g["log_std"]),
                                   np.asarray(blocks["log_std"][:, 0]), rtol=1e-4, atol=1e-6)


def test_precondition_is_the_damped_kronecker_inverse():
    rng = np.random.default_rng(0)
    xa, xg = rng.normal(size=(20, 4)), rng.normal(size=(20, 3))
    A, G = xa.T @ xa / 20, xg.T @ xg / 20
    grad = rng.normal(size=(4, 3))
    lam = 0.05
    nat = acktr.precondition(jnp.asarray(grad, jnp.float32), jnp.asarray(A, jnp.float32),
                             jnp.asarray(G, jnp.float32), lam)
    expected = np.linalg.solve(np.kron(A, G) + lam * np.eye(12), grad.reshape(-1))
    np.testing.assert_allclose(np.asarray(nat).reshape(-1), expected, rtol=1e-3, atol=1e-5)


def test_blocks_round_trip():
    policy, params, _, _ = setup(DiagGaussian(2), hidden=(5,))
    back = acktr.from_blocks(acktr.to_blocks(params))
    assert jax.tree.structure(back) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_kl_clipped_step_size():
    """eta = min(eta_max, sqrt(2 delta / vFv)) (Wu et al. 2017 §3.3): the quadratic KL of the
    step, eta^2 vFv / 2, never exceeds delta, and equals it whenever the clip binds."""
    delta, eta_max = 0.001, 0.25
    # clip binds: sqrt(2 * 0.001 / 2.0) = 0.0316 < 0.25
    np.testing.assert_allclose(float(acktr.kl_clipped_step_size(eta_max, delta, 2.0)),
                               np.sqrt(0.001), rtol=1e-6)
    # clip does not bind: vFv tiny
    assert float(acktr.kl_clipped_step_size(eta_max, delta, 1e-4)) == pytest.approx(eta_max)
    for vfv in (1e-6, 1e-3, 0.032, 0.5, 10.0, 1e4):
        eta = float(acktr.kl_clipped_step_size(eta_max, delta, vfv))
        assert 0.5 * eta ** 2 * vfv <= delta * (1 + 1e-5)
        if eta < eta_max:
            assert 0.5 * eta ** 2 * vfv == pytest.approx(delta, rel=1e-5)
    # the boundary: vFv = 2 delta / eta_max^2
    b = 2 * delta / eta_max ** 2
    assert float(acktr.kl_clipped_step_size(eta_max, delta, b * 1.01)) < eta_max
    assert float(acktr.kl_clipped_step_size(eta_max, delta, b * 0.99)) == pytest.approx(eta_max)


def make_batch(policy, params, obs, key):
    k1, k2 = jax.random.split(key)
    d = policy.dist_params(params["actor"], obs)
    a = policy.dist.sample(k1, d)
    adv = jax.random.normal(k2, (obs.shape[0],))
    return Batch(obs=obs, actions=a, logp=policy.dist.log_prob(d, a), dist=d,
                 values=policy.value(params, obs), advantages=adv,
                 returns=policy.value(params, obs) + adv)


@pytest.mark.parametrize("dist", DISTS, ids=lambda d: d.kind)
def test_update_steps_along_the_clipped_natural_gradient(dist):
    policy, params, obs, key = setup(dist, hidden=(8,), B=64)
    batch = make_batch(policy, params, obs, key)
    ac = acktr.ACKTRConfig(kfac_momentum=0.0)
    cfg = mcpo.TrainConfig(algo="acktr", env_id="CartPole-v1", num_envs=1, num_steps=64,
                           total_timesteps=640, algo_config=ac, **ONE_STEP)
    state = acktr.init(cfg, policy, jax.random.PRNGKey(0))._replace(params=params)
    new, stats = jax.jit(acktr.make_update(cfg, policy))(state, batch)
    # recompute the step from the pieces, with the same Fisher sample key
    _, k_fisher = jax.random.split(state.key)
    g, abar, _ = acktr.sampled_fisher_taps(policy, params, obs, k_fisher)
    A, G = acktr.kronecker_factors(g, abar)       # first update: factors = this batch's
    grads = jax.grad(lambda p: acktr.a2c_loss(p, (), batch, policy=policy,
                                              vf_coef=cfg.vf_coef, ent_coef=cfg.ent_coef,
                                              norm_adv=cfg.norm_adv)[0])(params)
    gb = acktr.to_blocks(grads)
    nat = jax.tree.map(lambda x, a, gg: acktr.precondition(x, a, gg, ac.kfac_damping), gb, A, G)
    vfv = sum(float(jnp.sum(n * x)) for n, x in zip(jax.tree.leaves(nat), jax.tree.leaves(gb)))
    eta = min(ac.acktr_lr, np.sqrt(2 * ac.acktr_kl_clip / vfv))
    np.testing.assert_allclose(float(stats["vFv"]), vfv, rtol=1e-3)
    np.testing.assert_allclose(float(stats["effective_lr"]), eta, rtol=1e-3)
    assert float(stats["predicted_kl"]) <= ac.acktr_kl_clip * (1 + 1e-4)
    expected = jax.tree.map(lambda p, n: p - eta * n, params, acktr.from_blocks(nat))
    for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-6)
    assert int(new.n_updates) == 1
    # the running averages hold this batch's factors after the first update
    for a, b in zip(jax.tree.leaves(new.algo.A), jax.tree.leaves(A)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)
    # the actual KL of the step on the batch is of the order of the trust region
    assert float(stats["kl_old_new"]) < 10 * ac.acktr_kl_clip


def test_running_average_of_the_factors():
    policy, params, obs, key = setup(Categorical(3), hidden=(8,), B=64)
    batch = make_batch(policy, params, obs, key)
    ac = acktr.ACKTRConfig(kfac_stats_decay=0.9)
    cfg = mcpo.TrainConfig(algo="acktr", env_id="CartPole-v1", num_envs=1, num_steps=64,
                           total_timesteps=640, algo_config=ac, **ONE_STEP)
    update = jax.jit(acktr.make_update(cfg, policy))
    s0 = acktr.init(cfg, policy, jax.random.PRNGKey(0))._replace(params=params)
    s1, _ = update(s0, batch)
    s2, _ = update(s1, batch)
    _, k_fisher = jax.random.split(s1.key)
    A_new, _ = acktr.kronecker_factors(*acktr.sampled_fisher_taps(policy, s1.params, obs,
                                                                  k_fisher)[:2])
    for old, new, fresh in zip(jax.tree.leaves(s1.algo.A), jax.tree.leaves(s2.algo.A),
                               jax.tree.leaves(A_new)):
        np.testing.assert_allclose(np.asarray(new), 0.9 * np.asarray(old) + 0.1 * np.asarray(fresh),
                                   rtol=1e-4, atol=1e-6)


def test_more_than_one_step_per_batch_is_refused():
    with pytest.raises(ConfigError, match="--update-epochs 1 --num-minibatches 1"):
        mcpo.TrainConfig(algo="acktr", env_id="CartPole-v1", num_envs=4, num_steps=8,
                         update_epochs=2, num_minibatches=1).validate()


def test_flags_reach_the_config():
    from mcpo.cli import build_parser

    args = build_parser().parse_args(["train", "--algo", "acktr", "--acktr-kl-clip", "0.002",
                                      "--acktr-lr", "0.1"])
    assert args.acktr_kl_clip == 0.002 and args.acktr_lr == 0.1


# ----------------------------------------------------------------------------------------------
# Learning
# ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_acktr_learns_cartpole(run_dir):
    # One K-FAC step per 512-step batch (the preset's 4 x 128): seeds 1-3 all reach 500 and
    # evaluate 500 within the preset's 50k steps; ACKTR's own defaults (Wu et al. 2017).
    result, rows = quick_train(run_dir, "acktr", CARTPOLE_QUICK, **ONE_STEP)
    assert rows[0]["ep_return_mean"] < 60
    solved, why = cartpole_solved(result, rows)
    assert solved, why
    # the trust region binds: the step size is below eta_max and the quadratic KL at delta
    assert all(r["predicted_kl"] <= 0.001 * (1 + 1e-4) for r in rows)
    assert np.mean([r["kl_clipped"] for r in rows]) > 0.5


@pytest.mark.slow
def test_acktr_improves_on_pendulum(run_dir):
    # One step per batch: 256-step batches (4 x 64) give ~390 K-FAC steps in the preset's 100k
    # (with the preset's 1024-step batches, ~100 steps, the gain is ~80). Seeds 1-3 gain
    # 951, 248, 833 (~5 s with OPENBLAS_NUM_THREADS=1; ~20 s on a loaded machine, where
    # threaded OpenBLAS makes each 65x65 eigh cost 4-8 ms).
    _, rows = quick_train(run_dir, "acktr", PENDULUM_QUICK, num_steps=64, **ONE_STEP)
    first, last, gain = pendulum_gain(rows)
    assert first < -1000
    assert gain >= PENDULUM_MIN_GAIN, (first, last)
