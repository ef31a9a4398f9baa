"""Rollout collection, GAE and the training batch (docs/design.md §3).

The collector steps the vector env with the sampling policy theta_old (actor forward in NumPy on
a host copy of the parameters). After the rollout one jitted call evaluates theta_old and the
critic on all T x E states at once -- values, bootstrap values of final observations, log-probs
and distribution parameters -- and computes GAE. So the per-step loop holds no JAX dispatch.
The exception is the Nature CNN (Atari), whose forward is a jitted call anyway: its pipelined
rollout (`HalfPipeline`) returns theta_old's distribution parameters and values with each
step's actions, and the batch takes them from there.

Truncation is not termination: on a time-limit truncation the target bootstraps with
gamma * V(final obs); on termination it does not (`gae`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mcpo.envs import RunningMeanStd, VecStep, env_seeds, normalize_obs


class Interrupted(Exception):
    """Raised inside the rollout when a stop was requested (SIGINT/SIGTERM)."""


class Episode(NamedTuple):
    """A finished episode as logged: the raw return (Atari: the unclipped game score of the
    whole game), its length, and success: it ended by termination with a positive last reward
    (MiniGrid: the goal was reached; a time-limit end is never a success)."""

    ret: float
    length: int
    success: bool


def episode_seed(*keys: int) -> int:
    """The first test episode's reset seed for `keys` (e.g. run seed and a purpose tag): a
    31-bit number from its own SeedSequence, so the episodes seed, seed + 1, ... of different
    runs (or purposes) do not share start states (with `run seed + constant`, runs with seeds 1
    and 2 shared 9 of their 10 evaluation episodes, and the spread over seeds was too small)."""
    return int(np.random.SeedSequence([*keys]).generate_state(1)[0] >> 1)


def play_episodes(env, act, episodes: int, seed: int, should_stop=lambda: False,
                  before_step=None) -> list[Episode]:
    """Full test episodes of `act(obs) -> action` on a plain env, reset with seeds seed,
    seed + 1, ...; returns them as `Episode`s (raw return, length, success). `should_stop()`
    is polled every step (raises Interrupted); `before_step()` runs before each step (e.g. to
    grab a video frame)."""
    out = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        done, total, n, r, term = False, 0.0, 0, 0.0, False
        while not done:
            if should_stop():
                raise Interrupted()
            if before_step is not None:
                before_step()
            obs, r, term, trunc, _ = env.step(act(obs))
            total += float(r)
            n += 1
            done = term or trunc
        out.append(Episode(total, n, bool(term and r > 0)))
    return out


class Rollout(NamedTuple):
    """Observations are (T, E, *obs_shape) in the vector env's dtype: float32 vectors
    (normalized if norm_obs) or uint8 frames/grids, kept uint8 (the network scales them)."""

    obs: np.ndarray         # (T, E, *obs_shape) normalized observations the policy saw
    actions: np.ndarray     # (T, E, A) unclipped samples, or (T, E) ints
    rewards: np.ndarray     # (T, E) rewards used for learning (scaled if norm_reward)
    terminated: np.ndarray  # (T, E)
    truncated: np.ndarray   # (T, E) time-limit ends that are not terminations
    final_obs: np.ndarray | None  # (T, E, *obs_shape) normalized last obs of episodes ending
    #                               at t (None: not needed, no truncation in the rollout)
    last_obs: np.ndarray    # (E, *obs_shape) normalized obs after the last step (bootstrap)
    # theta_old's distribution parameters and V on `obs`, when the rollout's own forward
    # computed them (the Atari pipeline: `HalfPipeline`); None: prepare_batch computes them
    dist: np.ndarray | None = None    # (T, E, P)
    values: np.ndarray | None = None  # (T, E)


class Batch(NamedTuple):
    """One rollout, flattened to B = T x E samples, as the update sees it."""

    obs: jax.Array
    actions: jax.Array
    logp: jax.Array         # log pi_old(a|s)
    dist: jax.Array         # pi_old's distribution parameters per state
    values: jax.Array       # V_old(s)
    advantages: jax.Array   # GAE, unnormalized
    returns: jax.Array      # advantages + values (value targets)


def gae(rewards, values, next_values, terminated, dones, gamma: float, lam: float):
    """Generalized advantage estimation over (T, E) arrays.

    next_values[t] is V of the state after step t: V(final obs) when the episode ended at t,
    else V(s_{t+1}). Termination zeroes the bootstrap; any end (termination or truncation)
    stops the lambda-recursion from crossing into the next episode.
    """
    not_term = 1.0 - terminated.astype(values.dtype)
    not_done = 1.0 - dones.astype(values.dtype)
    deltas = rewards + gamma * not_term * next_values - values

    def body(adv_next, x):
        delta, nd = x
        adv = delta + gamma * lam * nd * adv_next
        return adv, adv

    _, adv = jax.lax.scan(body, jnp.zeros_like(values[0]), (deltas, not_done), reverse=True)
    return adv, adv + values


def prepare_batch(policy, params, ro: Rollout, gamma: float, lam: float) -> Batch:
    """Rollout arrays + params -> Batch (theta_old evaluated on all states at once). Pure; the
    Gymnasium path jits it alone (`make_prepare_batch`), the JAX backends inside their loop."""
    T, E = ro.rewards.shape
    if ro.dist is not None:  # from the rollout's forward of theta_old (equal up to rounding)
        dist, values = ro.dist, ro.values
    else:
        dist, values = policy.forward_only(lambda o: policy.dist_and_value(params, o), ro.obs)
    v_last = policy.value(params, ro.last_obs)
    dones = jnp.logical_or(ro.terminated, ro.truncated)
    v_next = jnp.concatenate([values[1:], v_last[None]], axis=0)
    if ro.final_obs is not None:  # None: no truncation in this rollout (see make_prepare_batch)
        v_final = policy.forward_only(lambda o: policy.value(params, o), ro.final_obs)
        v_next = jnp.where(dones, v_final, v_next)
    adv, ret = gae(ro.rewards, values, v_next, ro.terminated, dones, gamma, lam)
    logp = policy.dist.log_prob(dist, ro.actions)
    flat = lambda x: x.reshape((T * E,) + x.shape[2:])  # noqa: E731
    return Batch(obs=flat(ro.obs), actions=flat(ro.actions), logp=flat(logp),
                 dist=flat(dist), values=flat(values), advantages=flat(adv),
                 returns=flat(ret))


def make_prepare_batch(policy, gamma: float, lam: float):
    """Jitted `prepare_batch(params, ro)`."""

    jitted = jax.jit(lambda params, ro: prepare_batch(policy, params, ro, gamma, lam))

    def prepare(params, ro: Rollout) -> Batch:
        # V(final obs) is needed only where an episode was truncated (a termination does not
        # bootstrap: GAE multiplies it by 0). Most rollouts have none on Atari (episodic life,
        # 108k-frame limit), where that forward is a third of this call; skipping it changes no
        # number (0 * V = 0 either way). Two compiled variants.
        if not np.any(ro.truncated):
            ro = ro._replace(final_obs=None)
        return jitted(params, ro)

    return prepare


def _sequential_sum(start: float, xs: np.ndarray) -> float:
    """start + xs[0] + xs[1] + ... added in order (np.cumsum does: the same float64 result as
    adding them one step at a time; np.sum's pairwise order would not be)."""
    return np.cumsum(np.concatenate([[start], xs]))[-1]


class HalfPipeline:
    """One rollout step at a time, the envs in two halves: the policy's forward for one half
    (a jitted JAX call, dispatched asynchronously) runs on XLA's threads while this thread
    steps the other half's envs. For the Nature CNN on Atari, whose forward (~2-3 ms per step
    of 8 envs) and emulators (~5 ms) used to take turns: 8 x 128 steps in 0.68 s instead of
    0.98 (benchmarks/RESULTS.md §1.0). Every env still acts on its own observation of the same
    step, with its own perturbation; only the batch each forward runs on is halved.
    Used when the policy can sample asynchronously (`sample_perturbed_async`), the vector env
    can step a range of its envs (`step_range`), there are >= 2 envs and no observation
    normalization (whose statistics take every env's observation before the next forward).

    Given theta_old's whole `params` (actor and critic) and a policy with `sample_terms_async`,
    each forward also returns the distribution parameters and V it computed on the way,
    handed to the batch by `theta_old()` after the rollout: the update then skips its pass of
    theta_old over the rollout's frames (~0.25 s of a ~3.7 s Breakout iteration, RESULTS §1.0).
    They equal that pass's numbers up to float rounding (the batch shapes differ)."""

    @staticmethod
    def applies(policy, vec, obs_rms) -> bool:
        return (obs_rms is None and vec.num_envs >= 2 and hasattr(vec, "step_range")
                and hasattr(policy, "sample_perturbed_async"))

    def __init__(self, policy, vec, actor, pert, low, high, params=None):
        E = vec.num_envs
        self.halves = ((0, E // 2), (E // 2, E))
        self.vec, self.pert, self.low, self.high = vec, pert, low, high
        self.terms = params is not None and hasattr(policy, "sample_terms_async")
        if self.terms:
            self.forward = lambda obs, p: policy.sample_terms_async(params, obs, p)
        else:
            self.forward = lambda obs, p: (policy.sample_perturbed_async(actor, obs, p),)
        self.kept = []  # the theta_old terms of each step's halves, still on the device
        self.pending = None  # each half's forward for the coming step

    def step(self, t: int, obs: np.ndarray) -> tuple[np.ndarray, VecStep]:
        """Step t from observations `obs` (E, ...): (actions (E, ...), the VecStep of all)."""
        if self.pending is None:
            self.pending = [self.forward(obs[a:b], self.pert[t][a:b]) for a, b in self.halves]
        actions, parts = [], []
        for k, (a, b) in enumerate(self.halves):
            out = self.pending[k]
            action = np.asarray(out[0])
            if self.terms:
                self.kept.append(out[1:])
            env_action = (action if self.low is None
                          else np.minimum(np.maximum(action, self.low), self.high))
            part = self.vec.step_range(env_action, a, b)
            if t + 1 < len(self.pert):  # the half's next forward, while the other half steps
                self.pending[k] = self.forward(part.obs, self.pert[t + 1][a:b])
            actions.append(action)
            parts.append(part)
        return np.concatenate(actions), VecStep(*(np.concatenate(f) for f in zip(*parts)))

    def theta_old(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(dist (T, E, P), values (T, E)) of the steps taken, or (None, None) without them:
        fetched from the device in one transfer after the rollout (one per step and half cost
        ~0.2 ms each, measured: +6 % rollout time)."""
        if not self.kept:
            return None, None
        kept = jax.device_get(self.kept)  # step by step, each step's halves in env order
        E = self.vec.num_envs
        dist = np.concatenate([d for d, _ in kept]).reshape((-1, E) + kept[0][0].shape[1:])
        values = np.concatenate([v for _, v in kept]).reshape(-1, E)
        return dist, values


class Collector:
    """Steps the vector env, keeps normalization statistics and episode statistics."""

    def __init__(self, vec, policy, *, num_steps: int, gamma: float, norm_obs: bool,
                 norm_reward: bool, clip_obs: float, clip_reward: float):
        self.vec = vec
        self.policy = policy
        self.T = num_steps
        self.E = vec.num_envs
        self.gamma = gamma
        self.clip_obs = clip_obs
        self.clip_reward = clip_reward
        if norm_obs and vec.obs_dtype != np.float32:
            raise ValueError("observation normalization needs float observations")
        self.obs_rms = RunningMeanStd(vec.obs_shape) if norm_obs else None
        self.ret_rms = RunningMeanStd(()) if norm_reward else None
        space = vec.single_action_space
        self.discrete = not hasattr(space, "low")
        if not self.discrete:
            self.low = space.low.astype(np.float32)
            self.high = space.high.astype(np.float32)
            self.act_shape = space.shape
        self.raw_obs = None
        self.ep_return = np.zeros(self.E)
        self.ep_length = np.zeros(self.E, np.int64)
        self.disc_return = np.zeros(self.E)
        self.lost_episodes = 0  # episodes in flight when envs were (re)started

    def start(self, seed: int, epoch: int) -> None:
        """(Re)start all envs, seeded from (seed, epoch)."""
        if self.raw_obs is not None:
            self.lost_episodes += int(np.sum(self.ep_length > 0))
        self.raw_obs = self.vec.reset(env_seeds(seed, epoch, self.E))
        if self.obs_rms is not None:
            self.obs_rms.update(self.raw_obs.astype(np.float64))
        self.ep_return[:] = 0.0
        self.ep_length[:] = 0
        self.disc_return[:] = 0.0

    def _scale_reward(self, rew: np.ndarray, ret_rms: RunningMeanStd):
        """Reward scaling: divide by the running std of the discounted return (as SB3's
        VecNormalize), then clip."""
        if self.E == 1:  # the same float64 operations on Python floats: ~1 us instead of ~6
            g = float(self.disc_return[0]) * self.gamma + float(rew[0])
            self.disc_return[0] = g
            ret_rms.update_one(g)
            r = float(rew[0]) / math.sqrt(float(ret_rms.var) + 1e-8)
            return min(max(r, -self.clip_reward), self.clip_reward)
        self.disc_return = self.disc_return * self.gamma + rew
        ret_rms.update(self.disc_return)
        rew = rew / np.sqrt(ret_rms.var + 1e-8)
        return np.minimum(np.maximum(rew, -self.clip_reward), self.clip_reward)

    def _norm(self, raw):
        return normalize_obs(raw, self.obs_rms, self.clip_obs)

    def collect(self, actor_np, rng: np.random.Generator, should_stop=lambda: False,
                theta_old=None):
        """Run T steps; returns (Rollout, list of the Episodes finished). `actor_np`: the
        actor as `policy.host_params` gives it; `theta_old`: optionally the whole parameters
        (actor and critic) it came from, for a rollout whose forward can return the batch's
        theta_old terms too (`HalfPipeline`). Interrupted (a stop was requested) leaves the
        statistics as they were before this rollout, so a checkpoint written then holds only
        completed iterations."""
        stats = [(rms, rms.state_dict()) for rms in (self.obs_rms, self.ret_rms)
                 if rms is not None]
        try:
            return self._collect(actor_np, rng, should_stop, theta_old)
        except Interrupted:
            for rms, before in stats:
                rms.load_state_dict(before)
            raise

    def _collect(self, actor_np, rng, should_stop, theta_old):
        # The loop runs once per env step, on one-row arrays when E = 1, where each NumPy call
        # costs ~0.5 us whatever it computes: it holds only what must be sequential (the
        # statistics, normalization, sampling); episode bookkeeping is done after it.
        T, E = self.T, self.E
        shape, dtype = (T, E) + self.vec.obs_shape, self.vec.obs_dtype
        obs_buf = np.empty(shape, dtype)
        fin_buf = np.zeros(shape, dtype)
        act_buf = (np.empty((T, E), np.int32) if self.discrete
                   else np.empty((T, E) + self.act_shape, np.float32))
        rew_buf = np.empty((T, E), np.float32)
        term_buf = np.empty((T, E), bool)
        trunc_buf = np.empty((T, E), bool)
        score_buf = np.empty((T, E))
        end_buf = np.zeros((T, E), bool)
        obs_rms, ret_rms = self.obs_rms, self.ret_rms
        obs = self._norm(self.raw_obs)
        pert = self.policy.perturbation_np(actor_np, self.policy.sample_noise(rng, (T, E)))
        sample = self.policy.sample_perturbed_np
        low, high, discrete = (None, None, True) if self.discrete else (self.low, self.high,
                                                                        False)
        pipeline = (HalfPipeline(self.policy, self.vec, actor_np, pert, low, high, theta_old)
                    if HalfPipeline.applies(self.policy, self.vec, obs_rms) else None)
        for t in range(T):
            if should_stop():
                raise Interrupted()
            obs_buf[t] = obs
            if pipeline is not None:
                action, stepped = pipeline.step(t, obs)
            else:
                action = sample(actor_np, obs, pert[t])
                env_action = action if discrete else np.minimum(np.maximum(action, low), high)
                stepped = self.vec.step(env_action)
            act_buf[t] = action
            raw, rew, term, trunc, final_raw, score, ended = stepped
            score_buf[t] = score
            if ret_rms is not None:
                rew = self._scale_reward(rew, ret_rms)
            rew_buf[t] = rew
            term_buf[t] = term
            trunc_buf[t] = trunc
            if obs_rms is not None:
                obs_rms.update(raw)
            if ended[0] if E == 1 else ended.any():
                idx = np.flatnonzero(ended)
                end_buf[t] = ended
                fin_buf[t, idx] = self._norm(final_raw[idx])
                self.disc_return[idx] = 0.0
            obs = self._norm(raw)
            self.raw_obs = raw
        dist, values = (None, None) if pipeline is None else pipeline.theta_old()
        ro = Rollout(obs=obs_buf, actions=act_buf, rewards=rew_buf, terminated=term_buf,
                     truncated=trunc_buf, final_obs=fin_buf, last_obs=obs, dist=dist,
                     values=values)
        return ro, self._episodes(score_buf, end_buf, term_buf)

    def _episodes(self, score, ended, term) -> list[Episode]:
        """The episodes that ended in this rollout, in step order (then env order), and the
        return and length of those still running carried on. Each return is the sequential
        sum of its raw rewards (`_sequential_sum`)."""
        T, E = score.shape
        found = []
        for i in range(E):
            t0 = 0
            for t in np.flatnonzero(ended[:, i]):
                seg = score[t0:t + 1, i]
                ret = _sequential_sum(self.ep_return[i], seg)
                found.append((t, i, Episode(float(ret), int(self.ep_length[i]) + len(seg),
                                            bool(term[t, i] and score[t, i] > 0))))
                self.ep_return[i], self.ep_length[i] = 0.0, 0
                t0 = t + 1
            seg = score[t0:, i]
            if len(seg):
                self.ep_return[i] = _sequential_sum(self.ep_return[i], seg)
                self.ep_length[i] += len(seg)
        found.sort(key=lambda x: (x[0], x[1]))
        return [e for _, _, e in found]

    # Checkpoint support -------------------------------------------------------------------------
    def state_dict(self) -> dict:
        # A run resumed from this checkpoint loses the episodes in flight now.
        d = {"lost_episodes": self.lost_episodes + int(np.sum(self.ep_length > 0))}
        if self.obs_rms is not None:
            d["obs_rms"] = self.obs_rms.state_dict()
        if self.ret_rms is not None:
            d["ret_rms"] = self.ret_rms.state_dict()
        return d

    def load_state_dict(self, d: dict) -> None:
        self.lost_episodes = int(d["lost_episodes"])
        if self.obs_rms is not None:
            self.obs_rms.load_state_dict(d["obs_rms"])
        if self.ret_rms is not None:
            self.ret_rms.load_state_dict(d["ret_rms"])
