"""Learning tests: fixed seed, CI-sized budgets (thresholds justified in conftest.py)."""

import pytest

from conftest import (CARTPOLE_QUICK, cartpole_solved, PENDULUM_MIN_GAIN, PENDULUM_QUICK,
                      pendulum_gain, quick_train)

pytestmark = pytest.mark.slow
# Methods that learn with the shared presets as they are. TRPO, A2C and ACKTR take one policy
# step per batch and need other batch sizes: their learning tests are in their own files, as is
# TRGPPO's CartPole test (which also checks its clip bounds).
ALGOS = ["mcpo", "ppo", "kl-fixed", "kl-adaptive", "mcpo-mean", "mdpo", "vmpo"]


@pytest.mark.parametrize("algo", ALGOS)
def test_learns_cartpole(run_dir, algo):
    result, rows = quick_train(run_dir, algo, CARTPOLE_QUICK)
    first = rows[0]["ep_return_mean"]
    assert first < 60  # starts near random (~22)
    solved, why = cartpole_solved(result, rows)
    assert solved, (algo, why)


@pytest.mark.parametrize("algo", ALGOS + ["trgppo"])
def test_improves_on_pendulum(run_dir, algo):
    _, rows = quick_train(run_dir, algo, PENDULUM_QUICK)
    first, last, gain = pendulum_gain(rows)
    assert first < -1000  # starts near random
    assert gain >= PENDULUM_MIN_GAIN, (algo, first, last)
