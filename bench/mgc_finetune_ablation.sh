#!/usr/bin/env bash
# Multi-view vs single-view fine-tuning from one common head-only warm-up checkpoint.
#
#   bash bench/mgc_finetune_ablation.sh WARMUP_CKPT DATA OUT [CONFIG] [STOP_STEP] [SEEDS]
#   e.g. bash bench/mgc_finetune_ablation.sh out/cpu_hour_h6000 out/d96 out/abl cpu_hour 6500 "0 1 2"
#
# For each seed and arm (mv: all losses, sv: --no-multiview) the warm-up checkpoint is copied to
# OUT/ARM_sSEED, trained on with CONFIG's schedule until the STOP_STEP checkpoint is written
# (CONFIG's checkpoint_every must divide STOP_STEP), then evaluated on DATA's held-out set
# (main.py --mode eval).  Prints one row per run, then the results as one JSON line.
# STEPS=N (environment) passes --steps N to training, to lengthen the preset's full-step phase;
# the warm-up checkpoint must then come from a run with the same --steps (same rate schedule).
set -euo pipefail
cd "$(dirname "$0")/.."
warm=$1; data=$2; out=$3; config=${4:-cpu_hour}; stop=${5:-6500}; seeds=${6:-"0 1 2"}
py=${PYTHON:-python}
mkdir -p "$out"
for seed in $seeds; do
  for arm in mv sv; do
    d=$out/${arm}_s${seed}
    [ -s "$d/eval.json" ] && continue
    rm -rf "$d"; cp -r "$warm" "$d"
    flag=(); [ "$arm" = sv ] && flag=(--no-multiview)
    [ -n "${STEPS:-}" ] && flag+=(--steps "$STEPS")
    "$py" main.py --model mgc --mode train --config "$config" --data "$data" --checkpoint "$d" \
      --seed "$seed" "${flag[@]}" --quiet > "$d/train.log" 2>&1 &
    pid=$!
    while [ ! -f "$d/ckpt-$stop.index" ]; do sleep 2; kill -0 $pid 2>/dev/null || break; done
    sleep 3; kill -TERM $pid 2>/dev/null || true; wait $pid || true
    [ -f "$d/ckpt-$stop.index" ] || { echo "error: $d: training stopped before step $stop" >&2; exit 2; }
    printf 'model_checkpoint_path: "ckpt-%s"\nall_model_checkpoint_paths: "ckpt-%s"\n' "$stop" "$stop" \
      > "$d/checkpoint"
    "$py" main.py --model mgc --mode eval --checkpoint "$d" --data "$data" 2>/dev/null | tail -1 \
      > "$d/eval.json"
  done
done
"$py" - "$out" $seeds <<'PY'
import json, sys
out, seeds = sys.argv[1], sys.argv[2:]
keys = ("rmse_sim_vs_mean_face", "rmse_vs_mean_face", "nme_percent", "photometric",
        "fit_rmse_sim_vs_mean_face")
print(f"{'arm':4} {'seed':>4} " + " ".join(f"{k[:12]:>12}" for k in keys))
results = {}
for arm in ("mv", "sv"):
  for seed in seeds:
    m = json.load(open(f"{out}/{arm}_s{seed}/eval.json"))
    results[f"{arm}_s{seed}"] = {k: m[k] for k in keys}
    if "by_yaw" in m:
      results[f"{arm}_s{seed}"]["by_yaw"] = m["by_yaw"]
    print(f"{arm:4} {seed:>4} " + " ".join(f"{m[k]:12.4f}" for k in keys))
print(json.dumps(results))
PY
