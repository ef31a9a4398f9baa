"""The experiment layer: sweeps of many runs (spec parsing, grid expansion, run naming, the
local pool and Ray backends, the progress view). It sits above the trainer and below the CLI.

    from mcpo.experiments import parse_spec, run_sweep
    spec = parse_spec(open("spec.yaml").read(), "spec.yaml", "sweeps/mine")
    summary = run_sweep(spec, "sweeps/mine")
"""

from mcpo.experiments.spec import Run, Spec, parse_spec, read_spec_source
from mcpo.experiments.sweep import SweepInterrupted, SweepSummary, run_sweep
from mcpo.experiments.sweepdir import read_sweep

__all__ = ["Run", "Spec", "SweepInterrupted", "SweepSummary", "parse_spec", "read_spec_source",
           "read_sweep", "run_sweep"]
