#!/bin/bash
# Paired A/B of one `mcpo train --backend gymnax --seeds ...` group between this checkout and a
# base commit, runs alternating (this, base, base, this), cold compiles. Prints per run the
# wall time, the first iteration's time and the steady steps/s of the whole group (from
# metrics.csv). Usage: benchmarks/ab_group.sh BASE_COMMIT [extra mcpo train flags...]
# Default flags: MCPO, Pendulum-v1, seeds 1-5, 1M steps each, no final evaluation.
set -euo pipefail
base=${1:?usage: ab_group.sh BASE_COMMIT [flags]}; shift
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-$here/.venv/bin/python}
flags=("$@")
[ ${#flags[@]} -eq 0 ] && flags=(--algo mcpo --env-id Pendulum-v1 --seeds 1,2,3,4,5
                                 --total-timesteps 1000000 --eval-episodes 0)
work=$(mktemp -d)
trap 'git -C "$here" worktree remove --force "$work/base" >/dev/null 2>&1; rm -rf "$work"' EXIT
git -C "$here" worktree add -f -q "$work/base" "$base"
for who in this base base this; do
  src=$here; [ $who = base ] && src=$work/base
  t0=$(date +%s.%N)
  PYTHONPATH=$src MCPO_COMPILE_CACHE=0 "$py" -m mcpo train --backend gymnax "${flags[@]}" \
    --run-dir "$work/$who" --no-progress --overwrite > "$work/$who.log" 2>&1
  t1=$(date +%s.%N)
  "$py" - "$work/$who" "$t0" "$t1" "$who" <<'PY'
import csv, glob, sys
runs = sorted(glob.glob(f"{sys.argv[1]}/*/metrics.csv"))
w = [float(r["wall_time"]) for r in csv.DictReader(open(runs[0]))]
steps = sum(int(list(csv.DictReader(open(f)))[-1]["global_step"]) for f in runs)
per_it = steps / len(w)
print(f"{sys.argv[4]:5s} wall {float(sys.argv[3]) - float(sys.argv[2]):6.1f} s, first iteration "
      f"{w[0]:5.1f} s, steady {per_it * (len(w) - 1) / (w[-1] - w[0]):9,.0f} steps/s")
PY
done
