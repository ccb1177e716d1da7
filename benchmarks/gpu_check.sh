#!/usr/bin/env bash
# One script for a lent GPU machine; finishes within ~5 minutes on one H100/H200.
#   bash benchmarks/gpu_check.sh            (sets up .venv if needed)
# Prints: deeptui bench on cuda, Monster training throughput (lecture loop vs deeptui's paths),
# and the sync-free step test under torch.cuda.set_sync_debug_mode("error").
set -uo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || make setup >/dev/null
PY=.venv/bin/python
echo "== device"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
echo "== deeptui bench --device cuda"
timeout 120 .venv/bin/deeptui bench --device cuda
echo "== sync-free training step"
timeout 180 $PY -m pytest -q tests/test_gpu.py
echo "== Monster, batch 64, 300 steps: lecture loop vs deeptui"
timeout 300 $PY benchmarks/train_speed.py --device cuda --steps 300 --warmup 30 --repeats 3
echo "== fast path + torch.compile (one run)"
timeout 300 $PY benchmarks/train_speed.py --device cuda --steps 300 --warmup 60 --repeats 1 --compile \
    --paths lecture,fast
