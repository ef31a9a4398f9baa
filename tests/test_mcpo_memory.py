"""MCPO's memory shown working or inert (issue 12): the always-on attention diagnostics, the
fixes behind flags (context normalization, return features, alpha's advantage and temperature,
our labelled extensions), the psi-vs-theta_old evaluation, and their refusals and resume."""

import dataclasses
import json
import math
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import mcpo
from mcpo.algos import context_norm as CN
from mcpo.algos import memory as M
from mcpo.algos import mcpo as mc
from mcpo.algos import psi_eval
from mcpo.algos.common import minibatch_epochs
from mcpo.checkpoint import flatten, load_checkpoint
from mcpo.cli import main
from mcpo.config import TrainConfig
from mcpo.distributions import DiagGaussian
from mcpo.logger import read_metrics
from mcpo.networks import MLPActorCritic
from mcpo.rollout import Batch
from mcpo.trainer import Trainer, resume

POLICY = MLPActorCritic(obs_dim=3, dist=DiagGaussian(2), hidden_sizes=(8,))
TINY = dict(env_id="Pendulum-v1", num_envs=2, num_steps=64, num_minibatches=2,
            update_epochs=2, progress=False, tensorboard=False, eval_episodes=0)
TIME_COLUMNS = {"wall_time", "sps", "rollout_time", "update_time"}


def _batch(actor, key, B=64, adv=None):
    k = jax.random.split(key, 3)
    obs = jax.random.normal(k[0], (B, 3))
    dist_old = POLICY.dist_params(actor, obs)
    actions = POLICY.dist.sample(k[1], dist_old)
    adv = jax.random.normal(k[2], (B,)) if adv is None else adv
    return Batch(obs=obs, actions=actions, logp=POLICY.dist.log_prob(dist_old, actions),
                 dist=dist_old, values=jnp.zeros(B), advantages=adv,
                 returns=adv + 3.0)


def _state(**mc_kwargs):
    cfg = TrainConfig(algo="mcpo", num_steps=64, num_minibatches=1, update_epochs=1,
                      algo_config=mc.MCPOConfig(**{"memory_size": 4,
                                                   # the paper's attention unless a test asks
                                                   "attn_slot_features": False, **mc_kwargs}))
    return cfg, mc.init(cfg, POLICY, jax.random.PRNGKey(0))


class StopAfter(mcpo.Callback):
    """Stops a run after `n` iterations (a checkpoint is written; resume continues it with
    the same config, so the learning-rate schedule is the same as an uninterrupted run's)."""

    def __init__(self, n):
        self.n = n

    def on_iteration(self, trainer, row):
        return trainer.iteration < self.n


def _objective(cfg, params, attn, algo, mb, **kw):
    return mc.mcpo_objective(params, attn, algo, mb, policy=POLICY, mc=cfg.algo_config,
                             vf_coef=0.5, ent_coef=0.0, norm_adv=True, **kw)


# ----------------------------------------------------------------------------------------------
# The attention can choose an older slot (issue 12, CI test 1)
# ----------------------------------------------------------------------------------------------
def _memory_with_a_better_older_slot(state, key):
    """Memory (capacity 4, full) of theta_old and three perturbations; advantages that reward
    the actions the policy at age 2 prefers. Returns (memory, batch, that age)."""
    actor = state.params["actor"]
    ks = jax.random.split(key, 5)
    mem = state.algo.memory
    perturbed = [jax.tree.map(lambda x, i=i: x + 0.5 * jax.random.normal(ks[i], x.shape), actor)
                 for i in range(3)]
    for p in perturbed:
        mem = M.memory_write(mem, p, jnp.asarray(True))
    target = perturbed[0]                  # written first of the three: age 2 of 0..3
    mb = _batch(actor, ks[3], B=256)
    good = POLICY.dist.log_prob(POLICY.dist_params(target, mb.obs), mb.actions) - mb.logp
    return mem, mb._replace(advantages=good), 2


def _l2_at_each_slot(cfg, state, algo, mb):
    """Eq. 5's L2 with psi = the single policy at each age (one-hot weights)."""
    adv = (mb.advantages - mb.advantages.mean()) / (mb.advantages.std() + 1e-8)
    out = []
    for age in range(4):
        slot = int(M.slot_ages(algo.memory).tolist().index(age))
        theta = jax.tree.map(lambda m: m[slot], algo.memory.params)
        logp = POLICY.dist.log_prob(POLICY.dist_params(theta, mb.obs), mb.actions)
        out.append(float(jnp.mean(jnp.exp(logp - mb.logp) * adv)))
    return out


@pytest.mark.parametrize("flags", [{}, {"attn_slot_features": True},
                                   {"context_norm": "running"}],
                         ids=["paper", "slot-features", "context-norm"])
def test_training_phi_on_L2_alone_moves_the_argmax_to_the_older_slot_that_maximizes_it(flags):
    cfg, state = _state(**flags)
    mem, mb, best_age = _memory_with_a_better_older_slot(state, jax.random.PRNGKey(3))
    algo = state.algo._replace(memory=mem)
    l2 = _l2_at_each_slot(cfg, state, algo, mb)
    assert int(np.argmax(l2)) == best_age, l2  # the construction: an older slot is best
    params = state.params
    tx = optax.adam(3e-2)
    opt = tx.init(algo.attn)

    @jax.jit
    def phi_step(attn, opt, algo):
        (loss, aux), g = jax.value_and_grad(
            lambda a: (lambda l, x: (x["phi_loss"], x))(*_objective(cfg, params, a, algo, mb)),
            has_aux=True)(attn)
        upd, opt = tx.update(g, opt, attn)
        return optax.apply_updates(attn, upd), opt, aux

    attn = algo.attn
    for i in range(300):
        attn, opt, aux = phi_step(attn, opt, algo)
        algo = algo._replace(ctx_norm=aux["ctx_norm"])  # () unless --context-norm
        if i == 0:  # starts near uniform
            assert np.asarray(aux["weights"]).max() < 0.3
    w = np.asarray(M.weights_by_age(aux["weights"], mem))
    assert int(np.argmax(w)) == best_age, w
    assert w[best_age] > 0.5, w
    assert float(aux["attn_objective"]) > l2[0]  # psi now beats the newest policy on L2


# ----------------------------------------------------------------------------------------------
# Diagnostics (always on)
# ----------------------------------------------------------------------------------------------
def test_attention_diagnostics_by_hand():
    mem = M.memory_init({"x": jnp.zeros(1)}, 5)
    for _ in range(2):
        mem = M.memory_write(mem, {"x": jnp.ones(1)}, jnp.asarray(True))
    # 3 of 5 slots filled; physical slots 0 (oldest), 1, 2 (newest)
    w = jnp.array([0.7, 0.2, 0.1, 0.0, 0.0])
    d = M.attention_diagnostics(w, mem)
    assert float(d["attn_entropy"]) == pytest.approx(-(0.7 * np.log(0.7) + 0.2 * np.log(0.2)
                                                      + 0.1 * np.log(0.1)), rel=1e-6)
    assert float(d["attn_argmax_age"]) == 2              # the oldest of the three
    assert float(d["attn_jstar_newest_last"]) == 1       # first in a queue appended at the end
    assert float(d["attn_jstar_newest_first"]) == 3
    assert float(d["attn_weight_newest"]) == pytest.approx(0.1)
    one_hot = M.attention_diagnostics(jnp.array([0.0, 0.0, 1.0, 0.0, 0.0]), mem)
    assert float(one_hot["attn_entropy"]) == 0.0
    assert float(one_hot["attn_jstar_newest_last"]) == 3
    g = jax.grad(lambda w: M.entropy(w))(jnp.array([0.5, 0.5, 0.0]))
    assert np.all(np.isfinite(np.asarray(g)))


def test_an_mcpo_run_logs_the_diagnostics_and_memory_size_one_runs_with_them(tmp_path):
    for n in (1, 4):
        run = tmp_path / f"n{n}"
        mcpo.train(mcpo.make_config("mcpo", "Pendulum-v1", memory_size=n, run_dir=str(run),
                                    total_timesteps=256, **{k: v for k, v in TINY.items()
                                                            if k != "env_id"}))
        rows = read_metrics(run / "metrics.csv")
        for r in rows:
            for k in ("attn_entropy", "attn_argmax_age", "attn_jstar_newest_last",
                      "attn_jstar_newest_first", "attn_weight_newest", "alpha",
                      "beta_max_frac", "memory_writes", "memory_fill", "attn_argmax",
                      "context_0", "context_std_9"):
                assert math.isfinite(r[k]), (n, k)
            assert 0 <= r["attn_argmax_age"] < n
            assert 1 <= r["attn_jstar_newest_last"] <= n
            assert 1 <= r["attn_jstar_newest_first"] <= n
            assert 0 <= r["attn_entropy"] <= math.log(n) + 1e-6
        if n == 1:  # psi is the one stored policy
            assert all(r["attn_weight_newest"] == 1.0 and r["attn_entropy"] == 0.0
                       for r in rows)
        assert all(k not in rows[0] for k in psi_eval.COLUMNS)  # off by default
    # Mean psi logs them too: uniform weights over the filled slots
    run = tmp_path / "mean"
    mcpo.train(mcpo.make_config("mcpo-mean", "Pendulum-v1", memory_size=40, run_dir=str(run),
                                total_timesteps=256, write_rule="every",
                                **{k: v for k, v in TINY.items() if k != "env_id"}))
    rows = read_metrics(run / "metrics.csv")
    fills = 1 + np.arange(2 * 4)  # 2 iterations x 4 minibatches, one write after each
    assert rows[0]["attn_entropy"] == pytest.approx(np.mean(np.log(fills[:4])), rel=1e-5)
    assert rows[1]["attn_weight_newest"] == pytest.approx(np.mean(1 / fills[4:]), rel=1e-5)


# ----------------------------------------------------------------------------------------------
# Context normalization (--context-norm)
# ----------------------------------------------------------------------------------------------
def test_running_statistics_are_welfords_and_ema_forgets():
    xs = np.random.default_rng(0).normal(size=(50, 3)).astype(np.float32) * [1e-5, 1.0, 100]
    s = CN.init(3)
    for x in xs:
        s = CN.update(s, jnp.asarray(x), "running", 0.9)
    np.testing.assert_allclose(np.asarray(s.mean), xs.mean(0), rtol=1e-4)
    np.testing.assert_allclose(np.asarray(s.var), xs.var(0), rtol=1e-3)
    e = CN.init(3)
    mean, var = xs[0].astype(np.float64), np.zeros(3)
    for i, x in enumerate(xs):
        e = CN.update(e, jnp.asarray(x), "ema", 0.9)
        if i:  # 1/n until 1/n < 1 - decay, then the fixed rate
            r = max(1 / (i + 1), 0.1)
            d = x - mean
            mean, var = mean + r * d, (1 - r) * (var + r * d * d)
    np.testing.assert_allclose(np.asarray(e.mean), mean, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(e.var), var, rtol=1e-3)
    z = np.asarray(CN.apply(s, jnp.asarray(xs[0])))
    np.testing.assert_allclose(z, (xs[0] - xs.mean(0)) / xs.std(0), rtol=1e-3)
    far = np.asarray(CN.apply(s, jnp.asarray(xs.mean(0) + 100 * xs.std(0))))
    np.testing.assert_array_equal(far, CN.CLIP)
    # a feature that never varies (R(theta_old) = E[A] = 0) is 0, not amplified noise
    flat = CN.update(CN.update(CN.init(1), jnp.array([1e-9]), "running", 0.9),
                     jnp.array([-1e-9]), "running", 0.9)
    assert abs(float(CN.apply(flat, jnp.array([1e-9]))[0])) < 1e-2


def test_context_norm_feeds_the_z_score_to_the_attention_and_lives_in_the_state():
    cfg, state = _state(context_norm="ema", context_norm_decay=0.5)
    assert isinstance(state.algo.ctx_norm, CN.ContextStats)
    mb = _batch(state.params["actor"], jax.random.PRNGKey(1))
    _, aux = _objective(cfg, state.params, state.algo.attn, state.algo, mb)
    stats = aux["ctx_norm"]
    assert float(stats.count) == 1.0
    np.testing.assert_allclose(np.asarray(stats.mean), np.asarray(aux["context"]), rtol=1e-6)
    # the weights are f_phi of the normalized context, not of the raw one
    z = CN.apply(stats, aux["context"])
    want = M.attention_weights(M.attention_logits(state.algo.attn, z), state.algo.memory)
    np.testing.assert_allclose(np.asarray(aux["weights"]), np.asarray(want), rtol=1e-6)
    # the default state has no normalization leaves (older checkpoints keep their layout)
    _, plain = _state()
    assert plain.algo.ctx_norm == ()
    keys = set(flatten(plain, "state"))
    assert not any("ctx_norm" in k or "'slot'" in k for k in keys)
    _, slotted = _state(attn_slot_features=True)
    assert set(flatten(slotted.algo.attn)) - set(flatten(plain.algo.attn))


def test_context_norm_statistics_survive_save_and_resume_bit_exactly(tmp_path):
    cfg = mcpo.make_config("mcpo", "Pendulum-v1", context_norm="ema", context_norm_decay=0.9,
                           memory_size=4, total_timesteps=4 * 128,
                           run_dir=str(tmp_path / "base"),
                           **{k: v for k, v in TINY.items() if k != "env_id"})
    mcpo.train(cfg, callbacks=[StopAfter(2)])
    ckpt = tmp_path / "base" / "checkpoints" / "latest.ckpt"
    arrays, meta = load_checkpoint(ckpt)
    saved = {k: v for k, v in arrays.items() if "ctx_norm" in k}
    assert set(saved) == {f"state.algo.ctx_norm.{n}" for n in ("count", "mean", "var")}
    assert float(saved["state.algo.ctx_norm.count"]) == 2 * 2 * 2  # 2 it x 2 ep x 2 mb
    # loading puts exactly these bits back into the learner state
    trainer = Trainer(cfg, tmp_path / "base")
    try:
        trainer.load(ckpt)
        restored = {k: v for k, v in flatten(trainer.state, "state").items() if "ctx_norm" in k}
    finally:
        trainer.close()
    for k, v in saved.items():
        np.testing.assert_array_equal(restored[k], v, err_msg=k)
        assert restored[k].dtype == v.dtype
    # resumed twice from that checkpoint: the statistics continue (count 16, not restarted)
    # and both resumes agree bit for bit, statistics and metrics
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(tmp_path / "base", a)
    shutil.copytree(tmp_path / "base", b)
    resume(a)
    resume(b)
    fa, _ = load_checkpoint(a / "checkpoints" / "latest.ckpt")
    fb, _ = load_checkpoint(b / "checkpoints" / "latest.ckpt")
    assert float(fa["state.algo.ctx_norm.count"]) == 4 * 2 * 2
    for k in saved:
        np.testing.assert_array_equal(fa[k], fb[k], err_msg=k)
    np.testing.assert_equal(_strip(read_metrics(a / "metrics.csv")),
                            _strip(read_metrics(b / "metrics.csv")))


def _strip(rows, skip=TIME_COLUMNS):
    return [{k: v for k, v in r.items() if k not in skip} for r in rows]


# ----------------------------------------------------------------------------------------------
# Return features, alpha, and our extensions
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("signal", ["normalized", "raw", "return"])
def test_context_return_features(signal):
    cfg, state = _state(context_returns=signal)
    mb = _batch(state.params["actor"], jax.random.PRNGKey(1))
    mb = mb._replace(advantages=mb.advantages * 3.0 + 0.5)
    _, aux = _objective(cfg, state.params, state.algo.attn, state.algo, mb)
    r_old = float(aux["context"][mc.CONTEXT_FULL.index("R_old")])
    want = {"normalized": 0.0, "raw": float(jnp.mean(mb.advantages)),
            "return": float(jnp.mean(mb.returns))}[signal]
    assert r_old == pytest.approx(want, abs=1e-5)
    # R(theta) at theta = theta_old (tau = 1) is the same mean
    assert float(aux["context"][mc.CONTEXT_FULL.index("R_theta")]) == pytest.approx(want,
                                                                                     abs=1e-5)


def test_alpha_advantage_and_temperature():
    logp_psi = jnp.array([-1.0, -0.5, -2.0])
    logp_old = jnp.array([-1.2, -0.9, -1.0])
    adv = jnp.array([4.0, -3.0, 2.0])
    tau = np.exp(np.asarray(logp_psi - logp_old))
    for temp in (1.0, 0.05):
        got = mc.alpha_weights(mc.MCPOConfig(alpha_temp=temp), logp_psi, logp_old, adv)
        want = 1 / (1 + np.exp(-(tau * np.asarray(adv) - np.asarray(adv)) / temp))
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5)
    # --alpha-adv raw: alpha sees the unnormalized advantages
    cfg, state = _state(alpha_adv="raw")
    params = dict(state.params, actor=jax.tree.map(lambda x: x * 1.5, state.params["actor"]))
    mem = M.memory_write(state.algo.memory, params["actor"], jnp.asarray(True))
    algo = state.algo._replace(memory=mem)
    mb = _batch(state.params["actor"], jax.random.PRNGKey(2))
    mb = mb._replace(advantages=mb.advantages * 50.0)
    _, raw = _objective(cfg, params, algo.attn, algo, mb)
    _, norm = _objective(dataclasses.replace(cfg, algo_config=mc.MCPOConfig(memory_size=4)),
                         params, algo.attn, algo, mb)
    logp = POLICY.dist.log_prob(raw["d_psi"], mb.actions)
    t = np.exp(np.asarray(logp - mb.logp))
    a = np.asarray(mb.advantages)
    assert float(raw["alpha"]) == pytest.approx(np.mean(1 / (1 + np.exp(-(t * a - a)))),
                                                rel=1e-4)
    assert abs(float(raw["alpha"]) - 0.5) > 2 * abs(float(norm["alpha"]) - 0.5)


def test_minibatch_epochs_pairs_each_minibatch_with_the_next():
    batch = Batch(*(jnp.arange(8.0) for _ in range(7)))

    def step(c, xs):
        mb, nxt = xs
        return c, (mb.obs, nxt.obs)

    _, (cur, nxt) = minibatch_epochs(0, batch, jax.random.PRNGKey(0), 2, 4, step,
                                     with_next=True)
    cur, nxt = np.asarray(cur), np.asarray(nxt)   # (epochs, minibatches, 2)
    for e in range(2):
        np.testing.assert_array_equal(nxt[e], np.roll(cur[e], -1, axis=0))
        assert sorted(cur[e].reshape(-1).tolist()) == list(range(8))


def test_next_minibatch_objective_scores_psi_on_the_other_minibatch():
    cfg, state = _state(attn_objective="next-minibatch")
    mem = M.memory_write(state.algo.memory, jax.tree.map(lambda x: x * 1.3,
                                                         state.params["actor"]),
                         jnp.asarray(True))
    algo = state.algo._replace(memory=mem)
    mb = _batch(state.params["actor"], jax.random.PRNGKey(1))
    other = _batch(state.params["actor"], jax.random.PRNGKey(2))
    _, aux = _objective(cfg, state.params, algo.attn, algo, mb, mb_phi=other)
    psi = aux["psi"]
    logp = POLICY.dist.log_prob(POLICY.dist_params(psi, other.obs), other.actions)
    adv = (other.advantages - other.advantages.mean()) / (other.advantages.std() + 1e-8)
    assert float(aux["attn_objective"]) == pytest.approx(
        float(jnp.mean(jnp.exp(logp - other.logp) * adv)), rel=1e-5)
    _, same = _objective(cfg, state.params, algo.attn, algo, mb)
    assert float(same["attn_objective"]) != pytest.approx(float(aux["attn_objective"]))
    # and the whole update runs with it
    new, stats = jax.jit(mc.make_update(cfg.replace(num_minibatches=4, update_epochs=2),
                                        POLICY))(state, mb)
    assert np.isfinite(float(stats["attn_objective"]))


def test_slot_features_by_hand_and_their_score_is_added_per_slot():
    cfg, state = _state(attn_slot_features=True)
    actor = state.params["actor"]
    mem = state.algo.memory
    for s in (1.2, 0.7):
        mem = M.memory_write(mem, jax.tree.map(lambda x, s=s: x * s, actor), jnp.asarray(True))
    mb = _batch(actor, jax.random.PRNGKey(1))
    adv = mb.advantages
    f = np.asarray(mc.slot_features(POLICY, state.params, mem, mb, adv))
    assert f.shape == (4, 3)
    np.testing.assert_array_equal(f[3], 0.0)  # the empty slot
    raw = []
    for age in range(3):
        slot = M.slot_ages(mem).tolist().index(age)
        th = jax.tree.map(lambda m: m[slot], mem.params)
        d = POLICY.dist_params(th, mb.obs)
        tau = jnp.exp(POLICY.dist.log_prob(d, mb.actions) - mb.logp)
        raw.append([float(jnp.mean(tau * adv)), float(jnp.mean(POLICY.dist.kl(mb.dist, d))),
                    float(jnp.mean(POLICY.dist.kl(d, POLICY.dist_params(actor, mb.obs))))])
    raw = np.array(raw)
    want = (raw - raw.mean(0)) / raw.std(0)
    np.testing.assert_allclose(f[:3], want, rtol=1e-3, atol=1e-4)
    logits = M.attention_logits(state.algo.attn, jnp.zeros(10), jnp.asarray(f))
    base = M.attention_logits({"mlp": state.algo.attn["mlp"]}, jnp.zeros(10))
    score = M.mlp(state.algo.attn["slot"], jnp.asarray(f))[:, 0]
    np.testing.assert_allclose(np.asarray(logits), np.asarray(base + score), rtol=1e-6)


def test_attention_entropy_bonus_enters_the_phi_loss_only():
    cfg, state = _state(attn_ent_coef=0.3)
    mem = M.memory_write(state.algo.memory, jax.tree.map(lambda x: x * 1.3,
                                                         state.params["actor"]),
                         jnp.asarray(True))
    algo = state.algo._replace(memory=mem)
    mb = _batch(state.params["actor"], jax.random.PRNGKey(1))
    _, aux = _objective(cfg, state.params, algo.attn, algo, mb)
    plain_cfg = dataclasses.replace(cfg, algo_config=mc.MCPOConfig(memory_size=4))
    _, plain = _objective(plain_cfg, state.params, algo.attn, algo, mb)
    assert float(aux["phi_loss"]) == pytest.approx(
        float(plain["phi_loss"]) - 0.3 * float(M.entropy(aux["weights"])), rel=1e-5)
    assert float(aux["theta_loss"]) == pytest.approx(float(plain["theta_loss"]), rel=1e-6)


# ----------------------------------------------------------------------------------------------
# psi vs theta_old (--eval-psi-every; paper Fig. 1b)
# ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_eval_psi_leaves_the_run_identical_and_logs_both_policies(tmp_path):
    common = dict(memory_size=4, total_timesteps=4 * 128,
                  **{k: v for k, v in TINY.items() if k != "env_id"})
    # both runs stopped after iteration 3 and resumed: the psi evaluation changes neither the
    # training nor the resume
    mcpo.train(mcpo.make_config("mcpo", "Pendulum-v1", run_dir=str(tmp_path / "plain"),
                                **common), callbacks=[StopAfter(3)])
    resume(tmp_path / "plain")
    cfg = mcpo.make_config("mcpo", "Pendulum-v1", run_dir=str(tmp_path / "eval"),
                           eval_psi_every=2, eval_psi_episodes=1, **common)
    mcpo.train(cfg, callbacks=[StopAfter(3)])
    resume(tmp_path / "eval")
    plain = read_metrics(tmp_path / "plain" / "metrics.csv")
    ev = read_metrics(tmp_path / "eval" / "metrics.csv")
    skip = TIME_COLUMNS | set(psi_eval.COLUMNS)
    assert set(ev[0]) - set(plain[0]) == set(psi_eval.COLUMNS)
    for a, b in zip(plain, ev):
        for k in a:
            if k not in skip:
                assert a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])), k
    for r in ev:
        on = r["iteration"] % 2 == 0
        for k in psi_eval.COLUMNS:
            assert math.isfinite(r[k]) == on, (r["iteration"], k)
        if on:  # Pendulum returns are in [-16.3 * 200, 0]
            assert -3300 < r["eval_psi_return_det"] <= 0 and -3300 < r["eval_old_return_stoch"]
    a, _ = load_checkpoint(tmp_path / "plain" / "checkpoints" / "latest.ckpt")
    b, _ = load_checkpoint(tmp_path / "eval" / "checkpoints" / "latest.ckpt")
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_psi_evaluation_scores_psi_and_theta_old_with_paired_seeds():
    class FakeTrainer:  # the public attributes the callback uses
        def __init__(self, state):
            self.cfg = TrainConfig(algo="mcpo", seed=3)
            self.iteration = 0
            self.state = state
            self.agents = []

        def agent(self, actor):
            a = Recorder(actor)
            self.agents.append(a)
            return a

    class Recorder:
        def __init__(self, actor):
            self.actor, self.seeds = actor, []

        def seed(self, s):
            self.seeds.append(s)

        def act(self, obs, deterministic):
            return np.array([2.0 if self.actor == "psi" else -2.0], np.float32) \
                if deterministic else np.zeros(1, np.float32)

    class S:
        params = {"actor": "old"}  # before the update; "theta" after it

        class algo:  # noqa: N801
            psi_old = "psi"

    tr = FakeTrainer(S)
    cb = psi_eval.PsiEvaluation(every=2, episodes=1)
    row = {}
    cb.before_iteration(tr)
    tr.iteration = 1
    cb.on_iteration(tr, row)
    assert all(math.isnan(row[c]) for c in psi_eval.COLUMNS)
    cb.before_iteration(tr)
    tr.iteration = 2
    S.params = {"actor": "theta"}  # the update
    cb.on_iteration(tr, row)
    assert [a.actor for a in tr.agents] == ["psi", "old", "theta"]
    assert all(a.seeds == [psi_eval.eval_seed(3, 2)] * 2 for a in tr.agents)
    assert row["eval_theta_return_det"] == row["eval_old_return_det"]  # both act -2
    # constant torques +2 / -2 / 0 on the same initial states give different returns
    assert row["eval_psi_return_det"] != row["eval_old_return_det"]
    assert row["eval_psi_return_stoch"] == row["eval_old_return_stoch"]
    assert psi_eval.eval_seed(3, 2) != psi_eval.eval_seed(3, 4) != psi_eval.eval_seed(4, 2)


# ----------------------------------------------------------------------------------------------
# Bad values are refused before anything is written
# ----------------------------------------------------------------------------------------------
BAD = [
    (["--context-norm", "welford"], "--context-norm must be one of none, running, ema"),
    (["--context-norm-decay", "1"], "--context-norm-decay must be > 0 and < 1; got 1.0"),
    (["--context-norm-decay", "0"], "--context-norm-decay must be > 0 and < 1; got 0.0"),
    (["--context-returns", "adv"], "--context-returns must be one of normalized, raw, return"),
    (["--alpha-adv", "scaled"], "--alpha-adv must be one of normalized, raw"),
    (["--alpha-temp", "0"], "--alpha-temp must be >= 1e-06"),
    (["--alpha-temp", "nan"], "expected a finite number"),
    (["--attn-objective", "next"], "--attn-objective must be one of same-minibatch, "
                                   "next-minibatch; got 'next'"),
    (["--attn-ent-coef", "-1"], "--attn-ent-coef must be >= 0"),
    (["--attn-slot-features", "1"], "unrecognized arguments"),
    (["--eval-psi-every", "-1"], "--eval-psi-every must be >= 0"),
    (["--eval-psi-every", "1.5"], "not a whole number"),
    (["--eval-psi-episodes", "0"], "--eval-psi-episodes must be >= 1"),
    (["--algo", "mcpo-mean", "--context-norm", "ema"],
     "--context-norm does not apply to --algo mcpo-mean"),
    (["--algo", "mcpo-mean", "--attn-ent-coef", "0.1"],
     "--attn-ent-coef does not apply to --algo mcpo-mean"),
    (["--algo", "ppo", "--eval-psi-every", "5"], "--eval-psi-every does not apply to --algo ppo"),
    (["--algo", "kl-fixed", "--context-norm", "ema"], "does not apply to --algo kl-fixed"),
]


@pytest.mark.parametrize("args,message", BAD)
def test_bad_values_of_the_new_flags_are_refused_before_anything_is_written(tmp_path, capsys,
                                                                           args, message):
    run = tmp_path / "new_run"
    code = None
    try:
        code = main(["train", "--run-dir", str(run), *args])
    except SystemExit as e:  # argparse's own refusals (a bool flag given a value)
        code = e.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert not run.exists() and list(tmp_path.iterdir()) == []


def test_older_mcpo_configs_without_the_new_fields_still_load():
    d = json.loads(mcpo.make_config("mcpo", "Pendulum-v1").to_json())
    for name in mc.MCPOConfig.ADDED_FIELDS:
        del d["algo_config"][name]
    cfg = TrainConfig.from_dict(d, strict=True)
    # those runs predate the slot features, so they ran without them, whatever today's default
    assert cfg.algo_config == mc.MCPOConfig(attn_slot_features=False)
    assert mc.MCPOConfig().attn_slot_features  # today's default
    # a user's partial dict is not a saved config: it gets today's defaults
    assert TrainConfig.from_dict(d).algo_config == mc.MCPOConfig()


def test_mix_has_the_gradient_of_autodiff_towards_the_weights():
    """Eq. 1's psi = sum_i w_i theta_i with its hand-written VJP: same psi, same gradient
    towards the weights as autodiff's tensordot, no gradient into the memory."""
    k = jax.random.split(jax.random.PRNGKey(3), 4)
    mem = {"w": jax.random.normal(k[0], (5, 7, 3)), "b": jax.random.normal(k[1], (5, 3)),
           "s": jax.random.normal(k[2], (5,))}
    w = jax.nn.softmax(jax.random.normal(k[3], (5,)))
    ref = lambda w, m: jax.tree.map(lambda x: jnp.tensordot(w, x, axes=1), m)  # noqa: E731
    loss = lambda mix: lambda w, m: sum(  # noqa: E731
        jnp.sum(jnp.sin(v) * (i + 1)) for i, v in enumerate(jax.tree.leaves(mix(w, m))))
    for a, e in zip(jax.tree.leaves(M.mix(w, mem)), jax.tree.leaves(ref(w, mem))):
        np.testing.assert_allclose(a, e, rtol=1e-6, atol=1e-6)
    g, gm = jax.jit(jax.grad(loss(M.mix), (0, 1)))(w, mem)
    np.testing.assert_allclose(g, jax.grad(loss(ref))(w, mem), rtol=1e-5, atol=1e-6)
    assert all(not np.any(x) for x in jax.tree.leaves(gm))
