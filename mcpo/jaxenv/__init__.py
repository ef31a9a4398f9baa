"""Pure-JAX environment backends (`--backend gymnax`, `--backend xminigrid`): the whole training loop in JAX.

* `base`       the interface a JAX env library implements (`JaxEnv`, `JaxStep`)
* `gymnax_env` gymnax behind that interface
* `xminigrid_env` XLand-MiniGrid's MiniGrid tasks behind it (`--backend xminigrid`)
* `registry`   backends, their ids and extras, `make_jax_env`, clear errors
* `running`    running observation statistics and reward scaling in JAX
* `loop`       one training iteration (rollout, GAE, update, logging reductions) as one pure
               function, vmapped over seeds and jitted
* `evaluate`   evaluation episodes in JAX
* `runner`     the host side: one run directory per seed, checkpoints, metrics, resume
"""
