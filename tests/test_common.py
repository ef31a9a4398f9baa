"""The shared update machinery (mcpo.algos.common): the epochs' shuffles equal
jax.random.permutation's, the optimizer on the flat parameter vector equals it on the pytree,
the learner state keeps its layout, and the losses' dense layer (mcpo.networks.dense, a
hand-written VJP) has autodiff's gradients."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mcpo
from mcpo.algos import ALGOS
from mcpo.algos.common import (flatten, make_optimizer, minibatch_epochs, permutation,
                               stable_argsort_u32, unflatten)
from mcpo.algos.kl import kl_penalty_loss
from mcpo.algos.ppo import ppo_loss
from mcpo.distributions import Categorical, DiagGaussian
from mcpo.networks import MLPActorCritic, dense
from mcpo.rollout import Batch


@pytest.mark.parametrize("n", [1, 2, 3, 64, 1000, 2048, 5000, 70_000])
def test_permutation_is_jax_random_permutation(n):
    for seed in range(3):
        key = jax.random.PRNGKey(seed)
        np.testing.assert_array_equal(jax.jit(permutation, static_argnums=1)(key, n),
                                      jax.random.permutation(key, n))


@pytest.mark.parametrize("n,high", [(5, 2), (100, 10), (2048, 300), (2048, 2**32)])
def test_stable_argsort_breaks_ties_by_position(n, high):
    keys = np.random.default_rng(n).integers(0, high, n, dtype=np.uint64).astype(np.uint32)
    np.testing.assert_array_equal(jax.jit(stable_argsort_u32)(jnp.asarray(keys)),
                                  np.argsort(keys, kind="stable"))


def _problem():
    policy = MLPActorCritic(obs_dim=3, dist=DiagGaussian(2), hidden_sizes=(8, 8))
    k = jax.random.split(jax.random.PRNGKey(0), 5)
    params = policy.init(k[0])
    obs = jax.random.normal(k[1], (32, 3))
    d = policy.dist_params(params["actor"], obs)
    actions = policy.dist.sample(k[2], d)
    adv = jax.random.normal(k[3], (32,))
    batch = Batch(obs=obs, actions=actions, logp=policy.dist.log_prob(d, actions), dist=d,
                  values=jnp.zeros(32), advantages=adv, returns=adv + 1.0)
    return policy, params, batch


def test_flatten_and_unflatten_round_trip_the_learner_state():
    policy, params, _ = _problem()
    cfg = mcpo.make_config("ppo", "Pendulum-v1")
    opt_state = make_optimizer(cfg).init(params)
    flat = flatten(params, opt_state)
    assert flat.params.ndim == 1
    assert all(x.ndim <= 1 for x in jax.tree.leaves(flat.opt_state))
    back = unflatten(flat, opt_state)
    assert jax.tree.structure(back) == jax.tree.structure((params, opt_state))
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves((params, opt_state))):
        np.testing.assert_array_equal(a, b)


def _loss(algo, cfg, policy):
    common = dict(policy=policy, vf_coef=cfg.vf_coef, ent_coef=cfg.ent_coef,
                  norm_adv=cfg.norm_adv)
    if algo == "ppo":
        return partial(ppo_loss, clip_coef=cfg.algo_config.clip_coef, **common)
    return partial(kl_penalty_loss, **common)


@pytest.mark.parametrize("algo", ["ppo", "kl-fixed"])
def test_the_flat_update_equals_the_optimizer_on_the_parameter_pytree(algo):
    """make_minibatch_update against the plain formulation: optax on the pytree, the same
    shuffles, minibatch by minibatch."""
    policy, params, batch = _problem()
    cfg = mcpo.make_config(algo, "Pendulum-v1", num_steps=32, num_minibatches=4,
                           update_epochs=3, total_timesteps=64)
    spec = ALGOS[algo]
    state = spec.init(cfg, policy, jax.random.PRNGKey(1))._replace(params=params)
    state = state._replace(opt_state=make_optimizer(cfg).init(params))
    new, stats = jax.jit(spec.make_update(cfg, policy))(state, batch)

    tx, loss = make_optimizer(cfg), _loss(algo, cfg, policy)
    p, o = state.params, state.opt_state
    _, k_perm = jax.random.split(state.key)
    grad_norms = []
    for k in jax.random.split(k_perm, cfg.update_epochs):
        perm = jax.random.permutation(k, 32)
        for i in range(cfg.num_minibatches):
            mb = jax.tree.map(lambda x: x[perm[i * 8:(i + 1) * 8]], batch)
            g = jax.grad(lambda q: loss(q, state.algo, mb)[0])(p)
            grad_norms.append(optax.global_norm(g))
            u, o = tx.update(g, o, p)
            p = optax.apply_updates(p, u)
    for a, b in zip(jax.tree.leaves((new.params, new.opt_state)), jax.tree.leaves((p, o))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    assert jax.tree.structure(new) == jax.tree.structure(state)
    assert int(new.n_updates) == cfg.update_epochs * cfg.num_minibatches
    np.testing.assert_allclose(stats["grad_norm"], np.mean(grad_norms), rtol=1e-5)


@pytest.mark.parametrize("shape", [(64, 3), (5, 7, 3)])
def test_dense_has_the_gradients_of_autodiff(shape):
    k = jax.random.split(jax.random.PRNGKey(0), 4)
    x, w = jax.random.normal(k[0], shape), jax.random.normal(k[1], (3, 6))
    b, ct = jax.random.normal(k[2], (6,)), jax.random.normal(k[3], shape[:-1] + (6,))
    f = lambda x, w, b: jnp.sum(jnp.tanh(dense(x, w, b)) * ct)  # noqa: E731
    g = lambda x, w, b: jnp.sum(jnp.tanh(x @ w + b) * ct)  # noqa: E731
    np.testing.assert_array_equal(dense(x, w, b), x @ w + b)
    for a, e in zip(jax.jit(jax.grad(f, (0, 1, 2)))(x, w, b),
                    jax.jit(jax.grad(g, (0, 1, 2)))(x, w, b)):
        np.testing.assert_allclose(a, e, rtol=1e-5, atol=1e-6)


def test_minibatch_epochs_returns_each_steps_diagnostics_as_it_was_given():
    """The per-step info leaves the scan packed in one float32 vector: every leaf comes back
    with its own shape, dtype and values, in (epoch, minibatch) order."""
    batch = {"x": jnp.arange(24, dtype=jnp.float32).reshape(12, 2)}

    def step(c, mb):
        x = mb["x"]
        info = {"mean": jnp.mean(x), "rows": x[:, 0], "grid": x.reshape(1, -1) * 2.0,
                "count": c, "big": jnp.sum(x).astype(jnp.int32) + 2**30,
                "positive": jnp.all(x >= 0), "half": jnp.mean(x).astype(jnp.float16)}
        return c + 1, info

    carry, info = jax.jit(lambda k: minibatch_epochs(
        jnp.int32(0), batch, k, n_epochs=2, n_minibatches=3, step_fn=step))(
        jax.random.PRNGKey(1))
    assert int(carry) == 6
    shapes = {k: (v.shape, v.dtype) for k, v in info.items()}
    assert shapes == {"mean": ((2, 3), jnp.float32), "rows": ((2, 3, 4), jnp.float32),
                      "grid": ((2, 3, 1, 8), jnp.float32), "count": ((2, 3), jnp.int32),
                      "big": ((2, 3), jnp.int32), "positive": ((2, 3), jnp.bool_),
                      "half": ((2, 3), jnp.float16)}
    np.testing.assert_array_equal(info["count"], np.arange(6).reshape(2, 3))
    for e in range(2):  # each epoch visits every row once; the leaves agree with each other
        rows = np.sort(np.asarray(info["rows"][e]).ravel())
        np.testing.assert_array_equal(rows, np.arange(0, 24, 2))
        for m in range(3):
            x0 = np.asarray(info["rows"][e, m])
            x = np.stack([x0, x0 + 1], axis=1)
            np.testing.assert_array_equal(info["grid"][e, m, 0], 2 * x.ravel())
            assert float(info["mean"][e, m]) == pytest.approx(x.mean())
            assert int(info["big"][e, m]) == int(x.sum()) + 2**30  # not through float32


@pytest.mark.parametrize("dist", [DiagGaussian(2), Categorical(4)])
def test_dist_and_value_equals_dist_params_and_value_with_their_gradients(dist):
    """The losses' forward (`dense` layers) against the plain one, values and gradients."""
    policy = MLPActorCritic(obs_dim=3, dist=dist, hidden_sizes=(64, 64))
    k = jax.random.split(jax.random.PRNGKey(0), 3)
    params = policy.init(k[0])
    obs = jax.random.normal(k[1], (64, 3))
    wd, wv = jax.random.normal(k[2], (2, dist.param_dim)), jnp.linspace(-1, 1, 64)

    def loss(p, fused):
        d, v = (policy.dist_and_value(p, obs) if fused else
                (policy.dist_params(p["actor"], obs), policy.value(p, obs)))
        return jnp.sum(jnp.tanh(d) * wd[0]) + jnp.sum(jnp.square(d) * wd[1]) + jnp.sum(v * wv)

    for a, e in zip(jax.tree.leaves(policy.dist_and_value(params, obs)),
                    (policy.dist_params(params["actor"], obs), policy.value(params, obs))):
        np.testing.assert_array_equal(a, e)
    ga = jax.jit(jax.grad(partial(loss, fused=True)))(params)
    ge = jax.jit(jax.grad(partial(loss, fused=False)))(params)
    # the weight gradients sum 64 samples in another order: float32 rounding, which differs
    # by CPU (AVX2 here: up to 3e-6 on 2 of 256 entries; AVX-512: within 1e-6)
    for a, e in zip(jax.tree.leaves(ga), jax.tree.leaves(ge)):
        np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-5)
