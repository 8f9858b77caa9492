#!/usr/bin/env bash
# One prepared GPU check for a session that is lent a GPU (< 7 minutes):
# LeNet5, resnet_small, resnet18_cifar and the `speedrun` preset (airbench net) on the CIFAR-10 copy,
# bf16 autocast + channels_last, images/s and test accuracy per epoch; figures to $OUT/gpu_check.json.
# Then (each optional, time-boxed): the Train page's live path (a queued run process watched through
# cnnviz.runs.snapshot: device, memory, images/s) to $OUT/gpu_live.json, and one DDP rank over NCCL against the
# plain process (bench/ddp.py) to $OUT/ddp.log.
#   bash bench/gpu_check.sh [extra args for bench/gpu_check.py, e.g. --only airbench]
# Data: $CNNVIZ_GPU_DATA, else ../shared/data/cifar10-jpeg, else shared/data/cifar10-jpeg (an ImageFolder
# tree), else the packed copy in .gpu-data/ (unpacked to /tmp); without one it measures throughput on
# the built-in shapes set and says so.
# On the lent device (no network, 64 MiB a call, ../shared does not travel), from a session here:
#   python bench/gpu_data.py pack          # once: .gpu-data/cifar10.{bin,json}, 55 MiB, git-ignored
#   device run: command "bash bench/gpu_check.sh", carry [".gpu-data"], timeout_s 480
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch" 2>/dev/null; then PY=.venv/bin/python; fi
if ! "$PY" -c "import torch, torchvision, safetensors, tqdm, PIL, numpy" 2>/dev/null; then
  echo "installing requirements..."
  "$PY" -m pip install -q -r requirements.txt
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
DATA=""
for d in "${CNNVIZ_GPU_DATA:-}" ../shared/data/cifar10-jpeg shared/data/cifar10-jpeg; do
  if [ -n "$d" ] && [ -d "$d/train" ]; then DATA="$d"; break; fi
done
if [ -z "$DATA" ] && [ -f .gpu-data/cifar10.bin ]; then
  "$PY" bench/gpu_data.py unpack --src .gpu-data --out /tmp/cifar10-jpeg && DATA=/tmp/cifar10-jpeg
fi
OUTDIR="${OUT:-/tmp/cnnviz-gpu-check}"
mkdir -p "$OUTDIR"
export CNNVIZ_RUNS=/tmp/cnnviz-gpu-runs CNNVIZ_CACHE=/tmp/cnnviz-gpu-cache CNNVIZ_DATA=/tmp/cnnviz-gpu-data
timeout 295 "$PY" bench/gpu_check.py --data "$DATA" --device cuda --out "$OUTDIR/gpu_check.json" "$@" \
  2>&1 | tee "$OUTDIR/gpu_check.log"
timeout 60 "$PY" bench/gpu_live.py --device cuda --seconds 15 --out "$OUTDIR/gpu_live.json" 2>&1 \
  | tee "$OUTDIR/gpu_live.log" || echo "gpu_live: did not finish"
timeout 90 "$PY" bench/ddp.py --device cuda --nproc 1 --limit-train 8192 --epochs 1 2>&1 \
  | tee "$OUTDIR/ddp.log" || echo "ddp: did not finish"
