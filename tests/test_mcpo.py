"""MCPO's pieces against hand computations (paper Eq. 1-5, Algorithm 1; docs/design.md §4)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mcpo.algos import memory as M
from mcpo.algos import mcpo as mc
from mcpo.config import TrainConfig
from mcpo.distributions import DiagGaussian
from mcpo.networks import MLPActorCritic
from mcpo.rollout import Batch

POLICY = MLPActorCritic(obs_dim=3, dist=DiagGaussian(2), hidden_sizes=(8,))


def tiny_actor(value: float):
    return {"mlp": [{"w": jnp.full((2, 2), value), "b": jnp.full((2,), -value)}],
            "log_std": jnp.full((2,), value / 10)}


def filled_memory(values, capacity):
    mem = M.memory_init(tiny_actor(values[0]), capacity)
    for v in values[1:]:
        mem = M.memory_write(mem, tiny_actor(v), jnp.asarray(True))
    return mem


# Eq. 1 ----------------------------------------------------------------------------------------
def test_psi_is_the_weighted_sum_of_memory_entries_leaf_by_leaf():
    mem = filled_memory([1.0, 2.0, 4.0], 3)
    w = jnp.array([0.2, 0.5, 0.3])
    psi = M.mix(w, mem.params)
    expected = 0.2 * 1.0 + 0.5 * 2.0 + 0.3 * 4.0
    np.testing.assert_allclose(psi["mlp"][0]["w"], np.full((2, 2), expected), rtol=1e-6)
    np.testing.assert_allclose(psi["mlp"][0]["b"], np.full((2,), -expected), rtol=1e-6)
    np.testing.assert_allclose(psi["log_std"], np.full((2,), expected / 10), rtol=1e-6)


def test_attention_masks_empty_slots_and_indexes_logits_by_age():
    mem = filled_memory([1.0, 2.0], 4)           # 2 of 4 slots used; newest is 2.0
    logits_by_age = jnp.array([0.3, -0.7, 5.0, 9.0])  # ages 2, 3 are empty slots
    w = M.attention_weights(logits_by_age, mem)
    assert np.asarray(mem.mask).tolist() == [True, True, False, False]
    np.testing.assert_array_equal(np.asarray(w)[2:], 0.0)
    e_new, e_old = np.exp(0.3), np.exp(-0.7)
    # physical slot 1 holds the newest policy (age 0), slot 0 the oldest (age 1)
    np.testing.assert_allclose(np.asarray(w)[:2], [e_old / (e_new + e_old),
                                                   e_new / (e_new + e_old)], rtol=1e-6)
    by_age = M.weights_by_age(w, mem)
    np.testing.assert_allclose(np.asarray(by_age)[:2], [e_new / (e_new + e_old),
                                                        e_old / (e_new + e_old)], rtol=1e-6)
    psi = M.mix(w, mem.params)
    np.testing.assert_allclose(float(psi["log_std"][0]),
                               (e_new * 0.2 + e_old * 0.1) / (e_new + e_old), rtol=1e-5)


def test_attention_gradient_is_finite_with_masked_slots():
    mem = filled_memory([1.0, 2.0], 4)
    g = jax.grad(lambda lg: M.mix(M.attention_weights(lg, mem), mem.params)["log_std"][0])(
        jnp.zeros(4))
    assert np.all(np.isfinite(np.asarray(g)))
    np.testing.assert_array_equal(np.asarray(g)[2:], 0.0)


# Eq. 2 and FIFO eviction ----------------------------------------------------------------------
def test_memory_write_fifo_eviction_and_ages():
    mem = M.memory_init(tiny_actor(0.0), 3)
    for v, write in [(1.0, True), (2.0, False), (3.0, True), (4.0, True)]:
        mem = M.memory_write(mem, tiny_actor(v), jnp.asarray(write))
    # written: 0 (init), 1, 3, 4 -> capacity 3 keeps 1, 3, 4; 0 was evicted; 2 never written
    assert int(mem.writes) == 3
    assert np.asarray(mem.mask).all()
    stored = sorted(float(x) for x in np.asarray(mem.params["log_std"])[:, 0] * 10)
    assert stored == pytest.approx([1.0, 3.0, 4.0])
    ages = np.asarray(M.slot_ages(mem))
    by_age = [float(np.asarray(mem.params["log_std"])[ages.tolist().index(a), 0] * 10)
              for a in range(3)]
    assert by_age == pytest.approx([4.0, 3.0, 1.0])  # age 0 = newest


def test_diversity_rule_writes_only_when_theta_is_farther_from_psi_than_theta_old():
    cfg = mc.MCPOConfig()
    assert bool(mc.should_write(cfg, jnp.asarray(0.2), jnp.asarray(0.1), 1))
    assert not bool(mc.should_write(cfg, jnp.asarray(0.1), jnp.asarray(0.2), 1))
    assert not bool(mc.should_write(cfg, jnp.asarray(0.1), jnp.asarray(0.1), 1))  # strict >
    every = dataclasses.replace(cfg, write_rule="every")
    assert bool(mc.should_write(every, jnp.asarray(0.0), jnp.asarray(1.0), 7))
    ten = dataclasses.replace(cfg, write_rule="interval:10")
    assert [bool(mc.should_write(ten, 0.0, 1.0, n)) for n in (9, 10, 11, 20)] == \
        [False, True, False, True]


# alpha_t and Eq. 4 ----------------------------------------------------------------------------
def test_alpha_matches_the_papers_softmax_of_returns():
    logp_psi = jnp.array([-1.0, -0.5, -2.0, -1.2])
    logp_old = jnp.array([-1.2, -0.5, -1.0, -1.2])
    adv = jnp.array([1.5, -0.3, 2.0, -1.0])
    alpha = mc.alpha_weights(mc.MCPOConfig(), logp_psi, logp_old, adv)
    r_psi = np.exp(np.array(logp_psi) - np.array(logp_old)) * np.array(adv)
    r_old = np.array(adv)  # tau_t(theta_old) = 1
    expected = np.exp(r_psi) / (np.exp(r_psi) + np.exp(r_old))
    np.testing.assert_allclose(np.asarray(alpha), expected, rtol=1e-5)
    fixed = mc.alpha_weights(mc.MCPOConfig(alpha_rule="fixed:0.5"), logp_psi, logp_old, adv)
    np.testing.assert_array_equal(np.asarray(fixed), 0.5)


def test_switching_beta():
    cfg = mc.MCPOConfig(beta_max=10.0, beta_min=0.01)
    for d_theta, d_psi, expected in [(0.02, 0.01, 10.0), (0.01, 0.02, 0.01), (0.01, 0.01, 0.01)]:
        beta, is_max = mc.switching_beta(cfg, jnp.asarray(d_theta), jnp.asarray(d_psi))
        assert float(beta) == pytest.approx(expected)
        assert bool(is_max) == (expected == 10.0)


# The two steps' gradients ---------------------------------------------------------------------
def _setup(alpha_rule="learned", B=64):
    cfg = TrainConfig(algo="mcpo", num_steps=B, num_minibatches=1, update_epochs=1,
                      algo_config=mc.MCPOConfig(memory_size=4, alpha_rule=alpha_rule))
    state = mc.init(cfg, POLICY, jax.random.PRNGKey(0))
    k = jax.random.split(jax.random.PRNGKey(1), 6)
    actor = state.params["actor"]
    # memory holds 3 distinct policies (theta_old plus two perturbations)
    mem = state.algo.memory
    for i in (1, 2):
        pert = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(k[i], x.shape), actor)
        mem = M.memory_write(mem, pert, jnp.asarray(True))
    obs = jax.random.normal(k[3], (B, 3))
    dist_old = POLICY.dist_params(actor, obs)
    actions = POLICY.dist.sample(k[4], dist_old)
    batch = Batch(obs=obs, actions=actions, logp=POLICY.dist.log_prob(dist_old, actions),
                  dist=dist_old, values=jnp.zeros(B),
                  advantages=jax.random.normal(k[5], (B,)), returns=jnp.zeros(B))
    # theta has moved away from theta_old, psi_old is another policy
    params = dict(state.params, actor=jax.tree.map(
        lambda x: x + 0.1 * jax.random.normal(k[0], x.shape), actor))
    algo = state.algo._replace(memory=mem, psi_old=jax.tree.map(lambda x: 0.9 * x, actor))
    return cfg, params, algo, batch


def _losses(cfg, params, attn, mem_params, algo, batch):
    algo = algo._replace(memory=algo.memory._replace(params=mem_params), attn=attn)
    _, aux = mc.mcpo_objective(params, attn, algo, batch, policy=POLICY, mc=cfg.algo_config,
                               vf_coef=0.5, ent_coef=0.0, norm_adv=True)
    return aux["theta_loss"], aux["phi_loss"]


def _norm(tree):
    return float(sum(jnp.sum(jnp.abs(x)) for x in jax.tree.leaves(tree)))


def test_theta_step_gradient_does_not_reach_phi_or_memory():
    cfg, params, algo, batch = _setup()
    f = lambda p, a, m: _losses(cfg, p, a, m, algo, batch)[0]  # noqa: E731
    g_theta, g_phi, g_mem = jax.grad(f, argnums=(0, 1, 2))(params, algo.attn,
                                                           algo.memory.params)
    assert _norm(g_theta["actor"]) > 0 and _norm(g_theta["critic"]) > 0
    assert _norm(g_phi) == 0.0
    assert _norm(g_mem) == 0.0


def test_phi_step_gradient_reaches_phi_only():
    cfg, params, algo, batch = _setup()
    f = lambda p, a, m: _losses(cfg, p, a, m, algo, batch)[1]  # noqa: E731
    g_theta, g_phi, g_mem = jax.grad(f, argnums=(0, 1, 2))(params, algo.attn,
                                                           algo.memory.params)
    assert _norm(g_phi) > 0
    assert _norm(g_theta) == 0.0
    assert _norm(g_mem) == 0.0


def test_combined_objective_gradient_equals_each_steps_own_gradient():
    """Eq. 6: one gradient of L1 + L2 gives the theta step's and the phi step's gradients."""
    cfg, params, algo, batch = _setup()
    (_, _), (g_theta, g_phi) = jax.value_and_grad(
        lambda p, a: mc.mcpo_objective(p, a, algo, batch, policy=POLICY, mc=cfg.algo_config,
                                       vf_coef=0.5, ent_coef=0.0, norm_adv=True),
        argnums=(0, 1), has_aux=True)(params, algo.attn)
    g1 = jax.grad(lambda p: _losses(cfg, p, algo.attn, algo.memory.params, algo, batch)[0])(
        params)
    g2 = jax.grad(lambda a: _losses(cfg, params, a, algo.memory.params, algo, batch)[1])(
        algo.attn)
    for x, y in zip(jax.tree.leaves(g_theta), jax.tree.leaves(g1)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-7)
    for x, y in zip(jax.tree.leaves(g_phi), jax.tree.leaves(g2)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-7)


def test_theta_loss_is_eq3_by_hand():
    cfg, params, algo, batch = _setup()
    _, aux = mc.mcpo_objective(params, algo.attn, algo, batch, policy=POLICY,
                               mc=cfg.algo_config, vf_coef=0.0, ent_coef=0.0, norm_adv=True)
    d = POLICY.dist
    adv = np.asarray(batch.advantages)
    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    d_theta = POLICY.dist_params(params["actor"], batch.obs)
    d_psi = aux["d_psi"]
    ratio = np.exp(np.asarray(d.log_prob(d_theta, batch.actions) - batch.logp))
    tau_psi = np.exp(np.asarray(d.log_prob(d_psi, batch.actions) - batch.logp))
    alpha = 1 / (1 + np.exp(-(tau_psi * adv - adv)))
    kl_old = np.asarray(d.kl(batch.dist, d_theta))
    kl_psi = np.asarray(d.kl(d_psi, d_theta))
    beta = 10.0 if kl_old.mean() > np.asarray(d.kl(batch.dist, d_psi)).mean() else 0.01
    l1 = (ratio * adv).mean() - beta * ((1 - alpha) * kl_old + alpha * kl_psi).mean()
    assert float(aux["beta"]) == pytest.approx(beta)
    assert float(aux["theta_loss"]) == pytest.approx(-l1, rel=1e-4)
    assert float(aux["phi_loss"]) == pytest.approx(-(tau_psi * adv).mean(), rel=1e-4)


def test_alpha_fixed_zero_removes_the_psi_term_from_the_gradient():
    cfg, params, algo, batch = _setup(alpha_rule="fixed:0")
    g = jax.grad(lambda p: _losses(cfg, p, algo.attn, algo.memory.params, algo, batch)[0])(
        params)
    # with alpha = 0 the theta loss does not depend on psi: moving the memory changes nothing
    algo2 = algo._replace(memory=algo.memory._replace(
        params=jax.tree.map(lambda x: x + 1.0, algo.memory.params)))
    g2 = jax.grad(lambda p: _losses(cfg, p, algo2.attn, algo2.memory.params, algo2, batch)[0])(
        params)
    for x, y in zip(jax.tree.leaves(g), jax.tree.leaves(g2)):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-6, atol=1e-8)


# The whole update (Algorithm 1 lines 4-11) ---------------------------------------------------
@pytest.mark.parametrize("write_rule,expected_writes", [("every", 8), ("interval:10", 0),
                                                        ("diversity", None)])
def test_update_bookkeeping(write_rule, expected_writes):
    B = 64
    cfg = TrainConfig(algo="mcpo", num_steps=B, num_minibatches=4, update_epochs=2,
                      algo_config=mc.MCPOConfig(memory_size=5, write_rule=write_rule))
    _, _, _, batch = _setup()
    state = mc.init(cfg, POLICY, jax.random.PRNGKey(0))
    update = jax.jit(mc.make_update(cfg, POLICY))
    new, stats = update(state, batch)
    assert int(new.n_updates) == 8
    writes = int(stats["memory_writes"])
    if expected_writes is not None:
        assert writes == expected_writes
    assert int(stats["memory_fill"]) == min(5, 1 + writes)
    assert int(new.algo.memory.writes) == writes
    w = np.asarray(stats["attn_weights"])
    assert w.shape == (5,) and w.sum() == pytest.approx(1.0, rel=1e-5)
    # theta moved, and the newest memory entry is the last theta written
    assert _norm(jax.tree.map(jnp.subtract, new.params["actor"], state.params["actor"])) > 0
    if write_rule == "every":
        newest = M.slot_ages(new.algo.memory).tolist().index(0)
        stored = jax.tree.map(lambda m: m[newest], new.algo.memory.params)
        for x, y in zip(jax.tree.leaves(stored), jax.tree.leaves(new.params["actor"])):
            np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert 0.0 <= float(stats["beta_max_frac"]) <= 1.0
    assert 0.0 < float(stats["alpha"]) < 1.0


# Ablation switches (issue 3): each changes exactly what it names ------------------------------
def _run_update(**mc_kwargs):
    B = 64
    algo = mc_kwargs.pop("algo", "mcpo")
    cls = mc.MCPOMeanConfig if algo == "mcpo-mean" else mc.MCPOConfig
    cfg = TrainConfig(algo=algo, num_steps=B, num_minibatches=4, update_epochs=2,
                      algo_config=cls(memory_size=5, **mc_kwargs))
    _, _, _, batch = _setup()
    state = mc.init(cfg, POLICY, jax.random.PRNGKey(0))
    new, stats = jax.jit(mc.make_update(cfg, POLICY))(state, batch)
    return cfg, state, new, stats


def test_mean_psi_uses_uniform_weights_and_never_trains_the_attention():
    cfg, state, new, stats = _run_update(algo="mcpo-mean", write_rule="every")
    fill = int(stats["memory_fill"])
    assert fill == 5
    # mean over minibatches of uniform weights over the slots valid at each minibatch
    w = np.asarray(stats["attn_weights"])
    fills = [min(5, 1 + k) for k in range(8)]  # 'every' writes after each of 8 minibatches
    expected = np.mean([[1 / f if j < f else 0.0 for j in range(5)] for f in fills], axis=0)
    np.testing.assert_allclose(w, expected, rtol=1e-5)
    for a, b in zip(jax.tree.leaves(state.algo.attn), jax.tree.leaves(new.algo.attn)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_attention_is_trained_by_default():
    _, state, new, _ = _run_update(write_rule="every")
    assert _norm(jax.tree.map(jnp.subtract, new.algo.attn, state.algo.attn)) > 0


def test_half_context_feeds_five_features():
    cfg, _, _, stats = _run_update(context="half")
    assert np.asarray(stats["context"]).shape == (5,)
    assert cfg.algo_config.context_names == mc.CONTEXT_HALF
    full = _run_update()[3]
    assert np.asarray(full["context"]).shape == (10,)
    # the half features are the same numbers as the corresponding full features
    _, params, algo, batch = _setup()
    adv = batch.advantages
    v_full = mc.context_features(POLICY, params, algo.psi_old, batch, adv, mc.CONTEXT_FULL)
    v_half = mc.context_features(POLICY, params, algo.psi_old, batch, adv, mc.CONTEXT_HALF)
    idx = [mc.CONTEXT_FULL.index(n) for n in mc.CONTEXT_HALF]
    np.testing.assert_allclose(np.asarray(v_half), np.asarray(v_full)[idx], rtol=1e-6)


def test_adaptive_beta_rule_uses_the_state_beta_and_adapts_it():
    cfg, state, new, stats = _run_update(beta_rule="adaptive", kl_beta=2.0, kl_target=1e-6)
    assert float(stats["beta"]) == pytest.approx(2.0)      # used for every minibatch
    assert float(stats["beta_max_frac"]) == 0.0
    assert float(stats["kl_old_new"]) > 1.5 * 1e-6          # far above target: doubles
    assert float(new.algo.beta) == pytest.approx(4.0)
    _, _, new2, stats2 = _run_update(beta_rule="adaptive", kl_beta=2.0, kl_target=10.0)
    assert float(new2.algo.beta) == pytest.approx(1.0)     # far below target: halves
    # switching (default) leaves the state's beta alone and uses beta_min/beta_max
    _, s0, n0, st0 = _run_update()
    assert float(n0.algo.beta) == float(s0.algo.beta)
    assert 0.01 <= float(st0["beta"]) <= 10.0


def test_annealed_beta_rule_follows_mdpo_schedule_capped_at_beta_max():
    assert float(mc.annealed_beta(0.0, 10.0)) == pytest.approx(1.0)
    assert float(mc.annealed_beta(0.5, 10.0)) == pytest.approx(2.0)
    assert float(mc.annealed_beta(0.95, 10.0)) == pytest.approx(10.0)  # 20 capped to 10
    assert float(mc.annealed_beta(1.0, 10.0)) == pytest.approx(10.0)
    cfg, state, new, stats = _run_update(beta_rule="annealed")
    assert float(stats["beta"]) == pytest.approx(1.0)  # iteration 0: t_0 = 1
    # one update of 8 optimizer steps out of cfg's total -> the next iteration's beta
    from mcpo.algos.common import total_optimizer_steps

    progress = 8 / total_optimizer_steps(cfg)
    assert float(new.algo.beta) == pytest.approx(min(10.0, 1 / (1 - progress)), rel=1e-6)


def test_cached_slot_outputs_give_the_uncached_update():
    # The host path keeps the memory slots' outputs on the whole batch and rewrites the
    # written slot (lax.cond); the vmapped path (batched=True) recomputes them per minibatch.
    # Same numbers up to float rounding, over updates that write to the memory.
    B = 64
    cfg = TrainConfig(algo="mcpo", num_steps=B, num_minibatches=4, update_epochs=3,
                      algo_config=mc.MCPOConfig(memory_size=4, write_rule="every"))
    cfg_div = dataclasses.replace(cfg, algo_config=mc.MCPOConfig(memory_size=4,
                                                                 write_rule="interval:4"))
    assert not mc.caches_slots(cfg.algo_config, False)  # 'every' writes too often to gain
    assert mc.caches_slots(cfg_div.algo_config, False)
    assert mc.caches_slots(mc.MCPOConfig(), False)  # the default: diversity writing
    assert not mc.caches_slots(cfg_div.algo_config, True)
    assert not mc.caches_slots(mc.MCPOConfig(attn_slot_features=False), False)
    _, _, _, batch = _setup()
    cached = jax.jit(mc.make_update(cfg_div, POLICY))
    plain = jax.jit(mc.make_update(cfg_div, POLICY, batched=True))
    # start from _setup's memory of 3 distinct policies (of 4 slots), so the slot features are not all equal
    _, _, algo, _ = _setup()
    s0 = mc.init(cfg_div, POLICY, jax.random.PRNGKey(0))
    s0 = s0._replace(algo=s0.algo._replace(memory=algo.memory))
    a, b = s0, s0
    writes = 0
    for _ in range(3):
        a, sa = cached(a, batch)
        b, sb = plain(b, batch)
        assert int(sa["memory_writes"]) == int(sb["memory_writes"])
        writes += int(sa["memory_writes"])
        for x, y in zip(jax.tree.leaves((a.params, a.algo.attn, a.algo.memory.params)),
                        jax.tree.leaves((b.params, b.algo.attn, b.algo.memory.params))):
            # atol: Adam turns a rounding-level gradient into a step of up to lr (3e-4)
            np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-4, atol=3e-5)
        np.testing.assert_allclose(sa["attn_weights"], sb["attn_weights"], rtol=1e-4,
                                   atol=1e-6)
    assert writes > 0  # the rewrite of a written slot was exercised

