"""TRPO: conjugate gradient, Fisher-vector products, line search, one update, learning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import (CARTPOLE_QUICK, cartpole_solved, PENDULUM_MIN_GAIN, PENDULUM_QUICK,
                      pendulum_gain, quick_train)

import mcpo
from mcpo.algos import trpo
from mcpo.distributions import Categorical, DiagGaussian
from mcpo.networks import MLPActorCritic
from mcpo.rollout import Batch


def tiny_batch(dist, B=16, obs_dim=3, seed=0, hidden=(4,)):
    """A tiny policy and a batch sampled from it (theta_old = the policy's parameters)."""
    policy = MLPActorCritic(obs_dim, dist, hidden)
    k = jax.random.split(jax.random.PRNGKey(seed), 4)
    params = policy.init(k[0])
    # larger output weights than the default 0.01 init, so that pi is far from uniform
    params["actor"]["mlp"][-1]["w"] = params["actor"]["mlp"][-1]["w"] * 100.0
    obs = jax.random.normal(k[1], (B, obs_dim))
    d = policy.dist_params(params["actor"], obs)
    a = policy.dist.sample(k[2], d)
    adv = jax.random.normal(k[3], (B,))
    batch = Batch(obs=obs, actions=a, logp=policy.dist.log_prob(d, a), dist=d,
                  values=jnp.zeros(B), advantages=adv, returns=adv)
    return policy, params, batch


DISTS = [Categorical(3), DiagGaussian(2)]


def test_conjugate_gradient_solves_an_spd_system():
    rng = np.random.default_rng(0)
    M = rng.normal(size=(6, 6))
    A = M @ M.T + 0.5 * np.eye(6)
    b = rng.normal(size=6)
    x, rr = trpo.conjugate_gradient(lambda v: jnp.asarray(A, jnp.float32) @ v,
                                    jnp.asarray(b, jnp.float32), iters=12)
    np.testing.assert_allclose(np.asarray(x), np.linalg.solve(A, b), rtol=1e-3, atol=1e-4)
    assert float(rr) < 1e-6
    # n iterations solve an n x n system exactly (up to rounding); fewer do not
    x3, _ = trpo.conjugate_gradient(lambda v: jnp.asarray(A, jnp.float32) @ v,
                                    jnp.asarray(b, jnp.float32), iters=2)
    assert np.linalg.norm(np.asarray(x3) - np.linalg.solve(A, b)) > 1e-2


def test_conjugate_gradient_on_a_diagonal_matrix():
    d = jnp.array([1.0, 2.0, 4.0, 8.0])
    b = jnp.array([1.0, 1.0, 1.0, 1.0])
    x, _ = trpo.conjugate_gradient(lambda v: d * v, b, iters=10)
    np.testing.assert_allclose(np.asarray(x), [1.0, 0.5, 0.25, 0.125], rtol=1e-5)


@pytest.mark.parametrize("dist", DISTS, ids=lambda d: d.kind)
def test_fisher_vector_product_matches_the_hessian_of_the_mean_kl(dist):
    policy, params, batch = tiny_batch(dist)
    damping = 0.1
    fvp, flat, unravel = trpo.make_fvp(policy, params["actor"], batch.obs, damping)
    d_old = policy.dist_params(params["actor"], batch.obs)

    def mean_kl(f):
        return jnp.mean(policy.dist.kl(d_old, policy.dist_params(unravel(f), batch.obs)))

    H = np.asarray(jax.hessian(mean_kl)(flat))         # explicit Fisher (n x n)
    n = flat.shape[0]
    assert np.abs(H).max() > 1e-3                       # not a trivial matrix
    F_cols = np.stack([np.asarray(fvp(jnp.eye(n)[i])) for i in range(n)], axis=1)
    np.testing.assert_allclose(F_cols, H + damping * np.eye(n), rtol=2e-3, atol=2e-5)


def test_fisher_vector_product_matches_the_analytic_fisher_of_a_softmax_policy():
    """Linear softmax policy, logits = s W + b: F = E_s E_{a~pi}[grad log pi grad log pi^T]."""
    policy = MLPActorCritic(2, Categorical(3), hidden_sizes=())
    params = policy.init(jax.random.PRNGKey(3))
    params["actor"]["mlp"][0]["w"] = jnp.array([[1.0, -0.5, 0.2], [0.3, 0.8, -1.0]])
    params["actor"]["mlp"][0]["b"] = jnp.array([0.1, 0.0, -0.2])
    obs = jnp.array([[0.5, -1.0], [1.5, 0.2], [-0.7, 0.9]])
    fvp, flat, unravel = trpo.make_fvp(policy, params["actor"], obs, damping=0.0)
    n = flat.shape[0]
    F = np.zeros((n, n))
    for s in np.asarray(obs):
        for a in range(3):
            def logp(f):
                return policy.dist.log_prob(policy.dist_params(unravel(f), s[None]),
                                            jnp.array([a]))[0]
            g = np.asarray(jax.grad(logp)(flat))
            p = float(jnp.exp(logp(flat)))
            F += p * np.outer(g, g) / len(obs)
    F_cols = np.stack([np.asarray(fvp(jnp.eye(n)[i])) for i in range(n)], axis=1)
    np.testing.assert_allclose(F_cols, F, rtol=1e-4, atol=1e-6)


def test_line_search_backtracks_until_the_kl_limit_holds():
    # KL(theta) = |theta|^4 (quartic: the quadratic model underestimates far steps);
    # surrogate = theta . 1 improves along the step. Full step: KL = 16 >> 0.01.
    kl = lambda th: jnp.sum(th ** 2) ** 2  # noqa: E731
    surrogate = lambda th: jnp.sum(th)  # noqa: E731
    theta = jnp.zeros(4)
    full = jnp.ones(4)
    new, info = trpo.line_search(surrogate, kl, theta, full, max_kl=0.01, max_steps=10,
                                 backtrack=0.5)
    assert float(info["accepted"]) == 1.0
    assert float(kl(new)) <= 0.01
    i = int(info["ls_steps"])
    # the first acceptable step: 0.5^i * |full|^... KL(0.5^i full) = (4 * 0.25^i)^2
    assert [(4 * 0.25 ** j) ** 2 <= 0.01 for j in range(i + 1)] == [False] * i + [True]
    np.testing.assert_allclose(np.asarray(new), 0.5 ** i * np.ones(4), rtol=1e-6)
    np.testing.assert_allclose(float(info["ls_kl"]), float(kl(new)), rtol=1e-6)


def test_line_search_rejects_steps_that_do_not_improve_or_exceed_the_kl_everywhere():
    theta = jnp.array([1.0, -1.0])
    # every candidate violates the KL limit
    new, info = trpo.line_search(lambda th: jnp.sum(th), lambda th: 1.0 + 0 * jnp.sum(th),
                                 theta, jnp.ones(2), max_kl=0.01, max_steps=5, backtrack=0.5)
    assert float(info["accepted"]) == 0.0 and int(info["ls_steps"]) == 5
    np.testing.assert_array_equal(np.asarray(new), np.asarray(theta))
    # within the KL limit but the surrogate gets worse along the step
    new, info = trpo.line_search(lambda th: -jnp.sum(th), lambda th: 0.0 * jnp.sum(th),
                                 theta, jnp.ones(2), max_kl=0.01, max_steps=5, backtrack=0.5)
    assert float(info["accepted"]) == 0.0
    np.testing.assert_array_equal(np.asarray(new), np.asarray(theta))


def natural_full_step(policy, actor, batch, max_kl, damping=0.1, iters=10):
    """The pieces of `trpo_policy_step` up to the line search: (flat, fullstep, surrogate,
    mean KL as functions of the flat parameters)."""
    adv = (batch.advantages - batch.advantages.mean()) / (batch.advantages.std() + 1e-8)
    fvp, flat, unravel = trpo.make_fvp(policy, actor, batch.obs, damping)
    surrogate = trpo.surrogate_fn(policy, unravel, batch, adv, 0.0)
    kl = lambda f: jnp.mean(policy.dist.kl(batch.dist,  # noqa: E731
                                           policy.dist_params(unravel(f), batch.obs)))
    g = jax.grad(surrogate)(flat)
    s, _ = trpo.conjugate_gradient(fvp, g, iters)
    return flat, jnp.sqrt(2 * max_kl / (s @ fvp(s))) * s, surrogate, kl


def test_line_search_on_a_real_policy_never_accepts_a_step_above_the_limit():
    """Gaussian policy, advantages that reward actions near the mean: the step shrinks the
    std, where the KL grows faster than its quadratic model, so the full natural-gradient step
    overshoots the limit and the line search must shorten it until the measured KL fits."""
    policy, params, batch = tiny_batch(DiagGaussian(2), B=64)
    z = (batch.actions - batch.dist[:, :2]) / jnp.exp(batch.dist[:, 2:])
    batch = batch._replace(advantages=1.0 - jnp.sum(z ** 2, -1) / 2)
    max_kl = 0.5
    flat, full, surrogate, kl = natural_full_step(policy, params["actor"], batch, max_kl)
    assert float(kl(flat + full)) > max_kl * 1.2         # the full step violates the limit
    new, info = trpo.line_search(surrogate, kl, flat, full, max_kl, max_steps=10,
                                 backtrack=0.5)
    assert float(info["accepted"]) == 1.0 and int(info["ls_steps"]) >= 1
    assert float(kl(new)) <= max_kl
    np.testing.assert_allclose(np.asarray(new),
                               np.asarray(flat + 0.5 ** int(info["ls_steps"]) * full),
                               rtol=1e-5, atol=1e-6)
    assert float(surrogate(new)) > float(surrogate(flat))
    # and through the whole policy step (same pieces, same radius)
    actor, info = trpo.trpo_policy_step(policy, params["actor"], batch,
                                        trpo.TRPOConfig(max_kl=max_kl), ent_coef=0.0,
                                        norm_adv=True)
    assert int(info["ls_steps"]) >= 1
    d_new = policy.dist_params(actor, batch.obs)
    assert float(jnp.mean(policy.dist.kl(batch.dist, d_new))) <= max_kl


def test_line_search_on_a_real_policy_rejects_a_full_step_that_worsens_the_surrogate():
    """Categorical policy, undamped Fisher, a large radius: the full step stays inside the KL
    limit but overshoots the surrogate's maximum; the line search must shorten it."""
    policy, params, batch = tiny_batch(Categorical(3), B=64)
    greedy = jnp.argmax(batch.dist, -1)
    batch = batch._replace(advantages=jnp.where(batch.actions == greedy, 1.0, -1.0))
    max_kl = 1.0
    flat, full, surrogate, kl = natural_full_step(policy, params["actor"], batch, max_kl,
                                                  damping=0.0)
    assert float(surrogate(flat + full)) < float(surrogate(flat))
    new, info = trpo.line_search(surrogate, kl, flat, full, max_kl, max_steps=10,
                                 backtrack=0.5)
    assert float(info["accepted"]) == 1.0 and int(info["ls_steps"]) >= 1
    assert float(kl(new)) <= max_kl
    assert float(surrogate(new)) > float(surrogate(flat))


@pytest.mark.parametrize("dist", DISTS, ids=lambda d: d.kind)
def test_policy_step_stays_within_max_kl_and_improves_the_surrogate(dist):
    policy, params, batch = tiny_batch(dist, B=64)
    mean_kl = lambda actor: float(jnp.mean(policy.dist.kl(  # noqa: E731
        batch.dist, policy.dist_params(actor, batch.obs))))
    for max_kl in (0.01, 0.5, 2.0):
        tc = trpo.TRPOConfig(max_kl=max_kl)
        actor, info = trpo.trpo_policy_step(policy, params["actor"], batch, tc, ent_coef=0.0,
                                            norm_adv=True)
        assert float(info["accepted"]) == 1.0
        assert mean_kl(actor) <= max_kl
        np.testing.assert_allclose(mean_kl(actor), float(info["ls_kl"]), rtol=1e-4)
        assert float(info["surrogate_improvement"]) > 0.0
        assert float(info["expected_improvement"]) > 0.0   # g^T (F + lambda I)^-1 g > 0
    # at the small radius the quadratic model is accurate: no backtracking, KL close to delta
    actor, info = trpo.trpo_policy_step(policy, params["actor"], batch,
                                        trpo.TRPOConfig(max_kl=0.001), ent_coef=0.0,
                                        norm_adv=True)
    assert int(info["ls_steps"]) == 0
    assert 0.0005 < mean_kl(actor) <= 0.001


def test_update_trains_the_critic_and_logs_diagnostics():
    policy, params, batch = tiny_batch(DiagGaussian(2), B=64)
    cfg = mcpo.TrainConfig(algo="trpo", env_id="Pendulum-v1", num_envs=1, num_steps=64,
                           update_epochs=2, num_minibatches=4, total_timesteps=640)
    state = trpo.init(cfg, policy, jax.random.PRNGKey(0))
    state = state._replace(params=params)
    state = state._replace(opt_state=trpo.make_optimizer(cfg).init(params["critic"]))
    update = jax.jit(trpo.make_update(cfg, policy))
    new, stats = update(state, batch)
    for k in ("accepted", "ls_steps", "ls_kl", "surrogate_improvement", "kl_old_new",
              "value_loss", "cg_residual"):
        assert k in stats, k
    assert int(new.n_updates) == 2 * 4
    assert float(stats["kl_old_new"]) <= cfg.algo_config.max_kl * (1 + 1e-5)
    moved = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), new.params["critic"],
                         params["critic"])
    assert max(jax.tree.leaves(moved)) > 0.0


def test_max_kl_flag_reaches_the_config():
    from mcpo.cli import build_parser

    args = build_parser().parse_args(["train", "--algo", "trpo", "--max-kl", "0.02"])
    assert args.max_kl == 0.02


# ----------------------------------------------------------------------------------------------
# Learning
# ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_trpo_learns_cartpole(run_dir):
    # TRPO takes one KL-limited policy step per batch (PPO: 16 minibatch steps), and a constant
    # KL radius keeps the final policy moving; a 1024-step batch (4 x 256) and 100k steps give
    # it ~100 steps and a well estimated Fisher (seeds 1-5 all evaluate >= 400 with this).
    result, rows = quick_train(run_dir, "trpo", CARTPOLE_QUICK, num_steps=256,
                               total_timesteps=100_000)
    assert rows[0]["ep_return_mean"] < 60
    solved, why = cartpole_solved(result, rows)
    assert solved, why
    assert all(r["kl_old_new"] <= 0.01 * (1 + 1e-4) for r in rows)


@pytest.mark.slow
def test_trpo_improves_on_pendulum(run_dir):
    _, rows = quick_train(run_dir, "trpo", PENDULUM_QUICK)
    first, last, gain = pendulum_gain(rows)
    assert first < -1000
    assert gain >= PENDULUM_MIN_GAIN, (first, last)
