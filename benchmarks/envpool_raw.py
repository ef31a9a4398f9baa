"""Raw vector-env steps/s, Gymnasium (our SyncVecEnv) vs envpool (our adapter), random actions."""
import sys, time, numpy as np, os
from mcpo.envpool_vec import make_backend_vec_env
print("load", os.getloadavg())
for env_id, n, steps in [("Pendulum-v1", 1, 3000), ("HalfCheetah-v5", 1, 3000), ("HalfCheetah-v5", 8, 500),
                         ("BipedalWalker-v3", 1, 2000), ("MiniGrid-Unlock-v0", 4, 1000), ("ALE/Breakout-v5", 8, 300)]:
    row = []
    for b in ("gymnasium", "envpool"):
        try:
            v = make_backend_vec_env(env_id, n, b)
        except Exception as e:
            row.append(f"{b}: n/a ({type(e).__name__})"); continue
        v.reset(list(range(n)))
        sp = v.single_action_space; rng = np.random.default_rng(0)
        acts = (rng.uniform(sp.low, sp.high, (steps, n) + sp.shape).astype(np.float32) if hasattr(sp, "low")
                else rng.integers(0, sp.n, (steps, n)).astype(np.int32))
        for a in acts[:50]: v.step(a)
        t = time.perf_counter()
        for a in acts: v.step(a)
        dt = time.perf_counter() - t
        row.append(f"{b} {steps * n / dt:,.0f}")
        v.close()
    print(f"| {env_id} | {n} | " + " | ".join(row) + " |", flush=True)
print("load", os.getloadavg())
