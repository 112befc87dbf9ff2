#!/usr/bin/env bash
# Multi-view vs single-view training from one common head-only warm-up checkpoint.
#
#   bash bench/mgc_finetune_ablation.sh WARMUP_CKPT DATA OUT [CONFIG] [STOP_STEP|end] [SEEDS]
#   e.g. bash bench/mgc_finetune_ablation.sh out/cpu_hour_h6000 out/d96 out/abl cpu_hour 6500 "0 1 2"
#
# For each seed and arm (mv: all losses, sv: --no-multiview) the warm-up checkpoint is copied to
# OUT/ARM_sSEED and trained on with CONFIG's schedule, then evaluated (main.py --mode eval) on
# the held-out split of each set in EVAL_SETS (environment; default DATA), written to
# OUT/ARM_sSEED/eval_<set folder name>.json.  STOP_STEP: training is stopped once that
# checkpoint is written (CONFIG's checkpoint_every must divide it); `end`: the run finishes the
# preset, its landmark cascade included (the warm-up's cascade is not copied).
# EVAL_ARGS (environment) is passed to the eval, e.g. "--self-fit-steps 0 --fit-steps 0" for the
# regressor's own figures only.  STEPS=N passes --steps N to training, to lengthen the preset's
# full-step phase; the warm-up checkpoint must then come from a run with the same --steps.
# WARM_STEP=N (environment), when WARMUP_CKPT does not exist yet: it is made first, as CONFIG's
# own run (seed: the first of SEEDS) stopped at its step-N checkpoint, so the warm-up keeps the
# preset's rate schedule (a run with --steps N would decay the rate over N steps instead).
# Prints one row per run and set, then the results as one JSON line.
set -euo pipefail
cd "$(dirname "$0")/.."
warm=$1; data=$2; out=$3; config=${4:-cpu_hour}; stop=${5:-6500}; seeds=${6:-"0 1 2"}
py=${PYTHON:-python}
eval_sets=${EVAL_SETS:-$data}
read -r -a eval_args <<< "${EVAL_ARGS:-}"
steps_flag=(); [ -n "${STEPS:-}" ] && steps_flag=(--steps "$STEPS")  # Warm-up and arms alike.
mkdir -p "$out"

# train DIR STOP SEED [FLAGS...]: CONFIG's run in DIR, to the end (STOP=end) or stopped once the
# step-STOP checkpoint is written (the folder's checkpoint file then names that one).
train() {
  local d=$1 stop=$2 seed=$3; shift 3
  "$py" main.py --model mgc --mode train --config "$config" --data "$data" --checkpoint "$d" \
    --seed "$seed" "$@" --quiet > "$d/train.log" 2>&1 &
  local pid=$!
  if [ "$stop" = end ]; then
    wait $pid || { echo "error: $d: training failed (see $d/train.log)" >&2; exit 2; }
    return
  fi
  while [ ! -f "$d/ckpt-$stop.index" ]; do sleep 2; kill -0 $pid 2>/dev/null || break; done
  sleep 3; kill -TERM $pid 2>/dev/null || true; wait $pid || true
  [ -f "$d/ckpt-$stop.index" ] || { echo "error: $d: training stopped before step $stop" >&2; exit 2; }
  printf 'model_checkpoint_path: "ckpt-%s"\nall_model_checkpoint_paths: "ckpt-%s"\n' "$stop" "$stop" \
    > "$d/checkpoint"
}

if [ ! -e "$warm" ] && [ -n "${WARM_STEP:-}" ]; then
  first_seed=${seeds%% *}
  mkdir -p "$warm"; train "$warm" "$WARM_STEP" "$first_seed" "${steps_flag[@]}"
fi
for seed in $seeds; do
  for arm in mv sv; do
    d=$out/${arm}_s${seed}
    done_sets=1
    for set in $eval_sets; do [ -s "$d/eval_$(basename "$set").json" ] || done_sets=0; done
    [ $done_sets = 1 ] && continue
    if [ ! -f "$d/trained" ]; then
      rm -rf "$d"; cp -r "$warm" "$d"; rm -f "$d/cascade.npz"
      flag=("${steps_flag[@]}"); [ "$arm" = sv ] && flag+=(--no-multiview)
      train "$d" "$stop" "$seed" "${flag[@]}"
      touch "$d/trained"
    fi
    for set in $eval_sets; do   # The file is written only after the eval succeeds.
      result=$("$py" main.py --model mgc --mode eval --checkpoint "$d" --data "$set" \
        "${eval_args[@]}" --quiet | tail -1)
      printf '%s\n' "$result" > "$d/eval_$(basename "$set").json"
    done
  done
done
"$py" - "$out" "$eval_sets" $seeds <<'PY'
import json, os, sys
out, sets, seeds = sys.argv[1], [os.path.basename(s) for s in sys.argv[2].split()], sys.argv[3:]
keys = ("rmse_sim_vs_mean_face", "rmse_vs_mean_face", "nme_percent", "photometric",
        "fit_rmse_sim_vs_mean_face")
print(f"{'arm':4} {'seed':>4} {'set':>12} " + " ".join(f"{k[:12]:>12}" for k in keys))
results = {}
for arm in ("mv", "sv"):
  for seed in seeds:
    for name in sets:
      m = json.load(open(f"{out}/{arm}_s{seed}/eval_{name}.json"))
      row = {k: m.get(k) for k in keys}
      if "by_yaw" in m:
        row["by_yaw"] = m["by_yaw"]
      results[f"{arm}_s{seed}_{name}"] = row
      print(f"{arm:4} {seed:>4} {name:>12} " + " ".join(
          f"{m[k]:12.4f}" if k in m else f"{'-':>12}" for k in keys))
print(json.dumps(results))
PY
