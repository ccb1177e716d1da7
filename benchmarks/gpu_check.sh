#!/usr/bin/env bash
# The last mile on a lent GPU machine (one H100/H200), under 7 minutes, one table at the end.
#
# Stages (each runs even when an earlier one failed; the exit code is 1 if any failed):
#   bench        deeptui bench --device cuda (the lecture's batch-vs-loop ratio)
#   parity       tests/test_device_parity.py on cuda: fp32/bf16/fp16 x optimizers x fused, each
#                through a freeze->unfreeze and an optimizer switch, no host sync per step
#   sync-free    tests/test_gpu.py: the step under torch.cuda.set_sync_debug_mode("error")
#   monster      the Monster at batch 64: the lecture's loop (DataLoader, 4 workers) against
#                deeptui's DataLoader and in-memory paths, and bf16 + channels_last
#   compile      the same with torch.compile (lecture loop vs the fast path)
#   nccl         a 1-rank NCCL run (torchrun) with commands mid-run, a checkpoint and a restore
#   unfreeze     the quickstart on cuda with fused momentum through its scheduled unfreeze
#   machine      the machine strip's readings through the real NVML: system.csv has cuda:0 rows
#
# Needs only the GPU image's python3 (torch, torchvision, numpy, PIL, pytest; no network) and
# tomli-w (deeptui writes config.toml with it); psutil and nvidia-ml-py for the machine strip
# (without them it says once that it has no figures). Carry their wheels: once, here,
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl tomli-w==1.2.0 psutil nvidia-ml-py
# then: run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=480)
# A rehearsal on a CPU machine (small sizes, every stage's plumbing): GPU_CHECK_DEVICE=cpu bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# deeptui without installing it: the checkout's folders are the package's (see pyproject.toml),
# so a link named deeptui to the checkout is the package.
mkdir -p "$WORK/site" && ln -s "$PWD" "$WORK/site/deeptui"
export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
if ! $PY -c "import tomli_w" 2>/dev/null; then
    if ls .whl/tomli_w-*.whl >/dev/null 2>&1; then
        $PY -m pip install -q --no-index --no-deps --target "$WORK/site" .whl/tomli_w-*.whl
    else
        echo "gpu_check: tomli_w is missing; carry its wheel (see the top of this script)"; exit 2
    fi
fi
for pair in psutil:psutil pynvml:nvidia_ml_py; do  # the machine strip's; optional
    if ! $PY -c "import ${pair%%:*}" 2>/dev/null && ls .whl/"${pair##*:}"-*.whl >/dev/null 2>&1; then
        $PY -m pip install -q --no-index --no-deps --target "$WORK/site" .whl/"${pair##*:}"-*.whl
    fi
done

if [ "$DEVICE" = cpu ]; then  # the rehearsal: every stage, small
    STEPS=20; WARMUP=5; IMAGES=2000; BLOCKS=2; REPEATS=1; SHAPES=512
else
    STEPS=300; WARMUP=30; IMAGES=50000; BLOCKS=16; REPEATS=3; SHAPES=6400
fi

ROWS=()
FAILED=0
stage() {  # stage NAME TIMEOUT COMMAND...: run it, keep its output, record status, time and figure
    local name=$1 limit=$2; shift 2
    echo "== $name: $*"
    local t0=$SECONDS
    timeout "$limit" "$@" 2>&1 | tee "$WORK/$name.log"
    local code=${PIPESTATUS[0]}
    local status=ok
    [ "$code" -ne 0 ] && { status="FAILED ($code)"; FAILED=1; }
    ROWS+=("$(printf '%-10s %-12s %5ss  %s' "$name" "$status" "$((SECONDS - t0))" "$(figure "$name")")")
}
figure() {  # the stage's key figure, from its log
    local log="$WORK/$1.log"
    case $1 in
        bench) grep -m1 -o 'GPU batch vs. loop speed ratio [0-9.]*' "$log" || grep -m1 -o 'CPU batch vs. loop speed ratio [0-9.]*' "$log" ;;
        parity|sync-free) grep -Eo '[0-9]+ (passed|failed)[^=]*' "$log" | tail -1 ;;
        monster|compile) grep -E '^\s+(dataloader|memory|fast) ' "$log" \
            | sed -E 's/^ +([a-z]+) +([0-9]+) samples\/s +x *([0-9.]+).*/\1 \3x/' | tr '\n' ' ' ;;
        nccl) grep -o '"final_state": "[a-z]*"' "$WORK/nccl/rank0.json" 2>/dev/null ;;
        unfreeze) grep -Eo 'deeptui: [a-z]+' "$log" | tail -1 ;;
        machine) grep -m1 -o 'machine: .*' "$log" ;;
    esac
}

echo "== device"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "(no nvidia-smi)"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0))"

stage bench 90 $PY -m deeptui bench --device "$DEVICE" --repeats 21
stage parity 150 env DEEPTUI_TEST_DEVICE="$DEVICE" $PY -m pytest -q -p no:asyncio -p no:cacheprovider \
    tests/test_device_parity.py -k "device_branch or dataloader_path"
if [ "$DEVICE" = cuda ]; then
    stage sync-free 90 $PY -m pytest -q -p no:asyncio -p no:cacheprovider tests/test_gpu.py
fi
stage monster 180 $PY benchmarks/train_speed.py --device "$DEVICE" --steps $STEPS --warmup $WARMUP \
    --images $IMAGES --blocks $BLOCKS --repeats $REPEATS
stage compile 150 $PY benchmarks/train_speed.py --device "$DEVICE" --steps $STEPS --warmup $((WARMUP * 2)) \
    --images $IMAGES --blocks $BLOCKS --repeats 1 --compile --paths lecture,fast
mkdir -p "$WORK/nccl"
stage nccl 90 env DEEPTUI_TEST_DEVICE="$DEVICE" $PY -m torch.distributed.run --standalone --nproc-per-node 1 \
    tests/dist_worker.py "$WORK/nccl" steer
stage unfreeze 90 $PY -m deeptui quickstart --headless --device "$DEVICE" --log-dir "$WORK/runs" \
    --set optimizer.name='"momentum"' --set data.train_size=$SHAPES --set data.test_size=500 --epochs 3
ROW=',cpu,'; [ "$DEVICE" = cuda ] && ROW=',cuda:0,[0-9]'
stage machine 90 bash -c "$PY -m deeptui quickstart --headless --device $DEVICE --log-dir $WORK/machine \
    --max-steps $STEPS --set data.train_size=$SHAPES --set log.interval=2 --set run.auto_timing=false \
    && grep -q '$ROW' $WORK/machine/*/system.csv"

echo
echo "gpu_check on $DEVICE: stage, status, seconds, figure"
printf '%s\n' "${ROWS[@]}"
exit $FAILED
