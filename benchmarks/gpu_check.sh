#!/usr/bin/env bash
# One script for a lent GPU machine; finishes within ~5 minutes on one H100/H200.
# Prints: deeptui bench on cuda, the sync-free step test under
# torch.cuda.set_sync_debug_mode("error"), and Monster training throughput (the lecture's loop
# vs deeptui's DataLoader, in-memory and bf16+channels_last(+compile) paths).
#
# The GPU image has torch, torchvision, numpy, PIL and pytest but no network and no tomli-w
# (deeptui writes config.toml with it). Carry its wheel: once, here,
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl tomli-w==1.2.0
# then: run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=420)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
if ! $PY -c "import tomli_w" 2>/dev/null; then
    if ls .whl/tomli_w-*.whl >/dev/null 2>&1; then
        $PY -m pip install -q --no-index --no-deps --target /tmp/site .whl/tomli_w-*.whl && export PYTHONPATH=/tmp/site
    else
        echo "gpu_check: tomli_w is missing; carry its wheel (see the top of this script)"; exit 2
    fi
fi
echo "== device"; nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
echo "== deeptui bench --device cuda"
timeout 120 $PY -m deeptui bench --device cuda
echo "== sync-free training step"
timeout 180 $PY -m pytest -q -p no:asyncio tests/test_gpu.py
echo "== Monster, batch 64, 300 steps: lecture loop vs deeptui"
timeout 240 $PY benchmarks/train_speed.py --device cuda --steps 300 --warmup 30 --repeats 3
echo "== fast path + torch.compile (one run)"
timeout 240 $PY benchmarks/train_speed.py --device cuda --steps 300 --warmup 60 --repeats 1 --compile \
    --paths lecture,fast
