#!/usr/bin/env bash
# The GPU check of docs/benchmarks.md, for a machine with a CUDA GPU and PyTorch installed:
#   bash bench/gpu_check.sh OUTDIR
# 1. bench-quick on CUDA (bfloat16 mixed precision is on by default there);
# 2. training throughput of the audit at 256 px (training images per second, from run.json).
set -euo pipefail
out=${1:?usage: bench/gpu_check.sh OUTDIR}
mkdir -p "$out"
python=${PYTHON:-python3}
work=$(mktemp -d)
$python - <<'PY' | tee "$out/device.txt"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda)
print("gpu", torch.cuda.get_device_name(0))
print("bf16", torch.cuda.is_bf16_supported())
PY
$python -m bench.matrix --quick --device cuda --out "$work/bench"
cp "$work"/bench/*/summary.json "$out/bench_quick_summary.json"
cp "$work"/bench/*/summary.md "$out/bench_quick_summary.md"
for size in 256; do
  $python -m cli audit --images data/sample/hc18/images --masks data/sample/hc18/masks \
    --size "$size" --epochs 12 --device cuda --out "$work/audit$size"
  cp "$work/audit$size/run.json" "$out/audit_${size}px_run.json"
  $python - "$work/audit$size/run.json" <<'PY'
import json, sys
run = json.load(open(sys.argv[1]))
t = run["timings"]
print(f"{run['config']['size']} px on {run['device']}: train {t['train_s']:.1f} s, "
      f"{t['train_slices_per_s']} training images/s, amp={run['config']['amp']}")
PY
done
