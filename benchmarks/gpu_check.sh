#!/usr/bin/env bash
# A GPU check that one short run on a lent GPU machine (one H100/H200) can trust.
#
#   bash benchmarks/gpu_check.sh [BUDGET_S]      # the whole check's seconds; default 540 (a call may run 600)
#
# Every stage runs under a limit capped by what is left of the budget; a stage that cannot get its
# minimum is marked SKIPPED in the table, never dropped. Crash stages go first, then the
# correctness of the machine strip and the parity matrix, then the timings. Each stage's log
# ($OUT/<stage>.log) and table row ($OUT/table.txt) are written as it ends, so a run cut short
# still leaves what it found. Exit code 1 when a stage failed.
#
# Printed first (and kept in $OUT/versions.txt): torch, CUDA, cuDNN and NCCL versions, the GPU, its
# MIG mode, clocks and power limit.
#
#   unfreeze    the quickstart with fused momentum through its scheduled unfreeze
#   resume      tests/test_resume_settings.py: every optimizer resumed with fused off -> on,
#               fp32 -> fp16, channels_last off -> on; the gradient scaler's scale resumed
#   lbfgs-cl    LBFGS under channels_last (the o key's cycle reaches it), and LBFGS with amp
#   sync-free   120 steps under torch.cuda.set_sync_debug_mode("error"), the layer probe every 5
#               steps (on the CPU: the host-sync counters)
#   sync-adam   Adam and momentum, fused and foreach, under the same check (CPU: the device
#               matrix's per-step host-sync counts for them)
#   dataloader  the DataLoader path with 2 workers (pinned memory on CUDA): freeze, switch, fused fp16
#   nccl        a 1-rank NCCL run under torchrun (GLOO_SOCKET_IFNAME=lo NCCL_SOCKET_IFNAME=lo) with
#               commands mid-run, a checkpoint and a restore; FAILED unless the run finished
#   machine     the machine strip through the real NVML: system.csv has cuda:0 rows
#   parity      the device matrix (precision x optimizer x foreach/fused through a freeze, an
#               unfreeze and a switch), TF32 off and cuDNN deterministic
#   bench       deeptui bench: the lecture's batch-vs-loop ratio
#   overhead    deeptui headless, the dashboard and a plain loop taking turns in 2 s windows:
#               steps/s, GPU time per step (CUDA events), NVML utilisation: GPU-bound or not
#   monster     the Monster at batch 64: the lecture's loop (DataLoader, 4 workers) against deeptui's
#               DataLoader and in-memory paths, and bf16 + channels_last
#   compile     the same with torch.compile; the compile time apart from samples/s
#
# Environment: OUT (default: a new folder under /tmp, printed first); GPU_CHECK_DEVICE (cuda; cpu
# is the rehearsal: every stage at small sizes); GPU_CHECK_STAGES (a comma list: only these run,
# the others are SKIPPED); GPU_CHECK_NCCL_MODE (tests/dist_worker.py's mode, "steer";
# tests/test_gpu_check.py passes "stopped", a run that does not finish).
#
# Needs only the GPU image's python3 (torch, torchvision, numpy, PIL, pytest; no network) and the
# wheels of what deeptui needs beyond it: tomli-w (deeptui writes config.toml with it); psutil
# and nvidia-ml-py for the machine strip; textual and plotext (and their dependencies) for the
# dashboard's timing. Carry them: once, here,
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --only-binary=:all: -d .whl tomli-w==1.2.0 psutil nvidia-ml-py textual plotext
# then: run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=480)
# A rehearsal on a CPU machine: GPU_CHECK_DEVICE=cpu bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
BUDGET=${1:-540}
START=$SECONDS
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${OMP_NUM_THREADS:-4}
DEVICE=${GPU_CHECK_DEVICE:-cuda}
ONLY=${GPU_CHECK_STAGES:-}
NCCL_MODE=${GPU_CHECK_NCCL_MODE:-steer}
OUT=${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX")}
mkdir -p "$OUT"
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# deeptui without installing it: the checkout's folders are the package's (see pyproject.toml),
# so a link named deeptui to the checkout is the package.
mkdir -p "$WORK/site" && ln -s "$PWD" "$WORK/site/deeptui"
export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
missing=()
for pair in tomli_w:tomli-w psutil:psutil pynvml:nvidia-ml-py textual:textual plotext:plotext; do
    $PY -c "import ${pair%%:*}" 2>/dev/null || missing+=("${pair##*:}")
done
if [ ${#missing[@]} -gt 0 ] && [ -d .whl ]; then  # each on its own: one that is not carried stops no other
    for pkg in "${missing[@]}"; do
        $PY -m pip install -q --no-index --find-links .whl --target "$WORK/site" "$pkg" >/dev/null 2>&1
    done
fi
if ! $PY -c "import tomli_w" 2>/dev/null; then
    echo "gpu_check: tomli_w is missing; carry its wheel (see the top of this script)"
    exit 2
fi

PYTEST=(env "DEEPTUI_TEST_DEVICE=$DEVICE" $PY -m pytest -q -p no:cacheprovider)
if [ "$DEVICE" = cpu ]; then  # the rehearsal: every stage, small
    STEPS=20; WARMUP=5; IMAGES=2000; BLOCKS=2; REPEATS=1; SHAPES=512; ROUNDS=2
    OVERHEAD=(--set model.blocks=1 --set model.channels=8 --set data.train_size=64000 --set log.interval=2)
    SYNC_FREE=(tests/test_perf.py -k "host_sync or host_data")
    SYNC_ADAM=(tests/test_device_parity.py -k "device_branch and (off-adam or off-momentum)")
else
    STEPS=300; WARMUP=30; IMAGES=50000; BLOCKS=16; REPEATS=3; SHAPES=6400; ROUNDS=8
    OVERHEAD=()
    SYNC_FREE=(tests/test_gpu.py -k training_step_is_sync_free)
    SYNC_ADAM=(tests/test_gpu.py -k adam_and_momentum)
fi
VARIANTS=plain,headless
if $PY -c "import textual, plotext" 2>/dev/null; then VARIANTS+=,dashboard; fi

FAILED=0
row() {  # one table row, on the screen and in $OUT/table.txt at once
    printf '%-10s %-30s %5s  %s\n' "$1" "$2" "$3" "$4" | tee -a "$OUT/table.txt"
}
stage() {  # stage NAME LIMIT MIN COMMAND...: run it within what is left of the budget
    local name=$1 limit=$2 min=$3
    shift 3
    local left=$((BUDGET - (SECONDS - START)))
    if [ -n "$ONLY" ] && [[ ",$ONLY," != *",$name,"* ]]; then
        row "$name" "SKIPPED (not asked)" - ""
        return
    fi
    if [ "$left" -lt "$min" ]; then
        row "$name" "SKIPPED (budget: ${left}s left)" - ""
        return
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $name (at most ${limit}s): $*"
    local t0=$SECONDS
    timeout -k 10 "$limit" "$@" >"$OUT/$name.log" 2>&1
    local code=$?
    local status=ok
    if [ "$code" -eq 124 ] || [ "$code" -eq 137 ]; then
        status="FAILED (over ${limit}s)"
    elif [ "$code" -ne 0 ]; then
        status="FAILED (exit $code)"
    fi
    if [ "$status" != ok ]; then
        FAILED=1
        tail -n 15 "$OUT/$name.log" | sed 's/^/    /'
    fi
    row "$name" "$status" "$((SECONDS - t0))s" "$(figure "$name")"
}
figure() {  # the stage's key figure, from its log
    local log="$OUT/$1.log"
    case $1 in
        unfreeze) grep -Eo 'deeptui: [a-z]+' "$log" | tail -1 ;;
        resume | lbfgs-cl | sync-free | sync-adam | dataloader | parity)
            grep -Eo '[0-9]+ (passed|failed|skipped|error)[^=]*' "$log" | tail -1 ;;
        nccl) grep -o '"final_state": "[a-z]*"' "$OUT/nccl/rank0.json" 2>/dev/null || echo "no rank0.json" ;;
        machine) grep -m1 -o 'machine: .*' "$log" ;;
        bench) grep -m1 -Eo '(GPU|CPU) batch vs. loop speed ratio [0-9.]*' "$log" ;;
        overhead)  # the ratios to the plain loop, then each loop's verdict
            grep -E '/ plain ' "$log" | awk '{printf "%s/%s %s; ", $1, $3, $4}'
            grep -Eo 'verdict: [a-z]+: (GPU-bound|host-bound|no GPU time)( \(the GPU works [0-9]+%)?' "$log" |
                sed -E 's/verdict: //; s/ \(the GPU works /, GPU /' | paste -sd ';' ;;
        monster | compile)  # each path's ratio to the lecture's loop; the compile time apart
            grep -E '^ +(lecture|dataloader|memory|fast) ' "$log" | awk '{
                match($0, /x *[0-9.]+/); r = substr($0, RSTART + 1, RLENGTH - 1); gsub(/ /, "", r)
                c = match($0, /compile [0-9.]+ s/) ? " (" substr($0, RSTART, RLENGTH) ")" : ""
                printf "%s %sx%s  ", $1, r, c }' ;;
    esac
}

{
    echo "gpu_check on $DEVICE, budget ${BUDGET}s; results in $OUT"
    nvidia-smi --query-gpu=index,name,driver_version,mig.mode.current,clocks.sm,clocks.max.sm,clocks.mem,power.limit,temperature.gpu \
        --format=csv 2>/dev/null || echo "(no nvidia-smi)"
    $PY -c "
import torch
cuda = torch.cuda.is_available()
nccl = torch.cuda.nccl.version() if cuda else None
print('torch', torch.__version__, '| CUDA', torch.version.cuda, '| cuDNN', torch.backends.cudnn.version() if cuda else None,
      '| NCCL', '.'.join(map(str, nccl)) if isinstance(nccl, tuple) else nccl,
      '|', torch.cuda.get_device_name(0) if cuda else 'no GPU')"
    echo "missing, installed from .whl where carried: ${missing[*]:-none}; overhead variants: $VARIANTS"
} 2>&1 | tee "$OUT/versions.txt"
row stage status time figure

# ---- crash stages -------------------------------------------------------------------------
stage unfreeze 60 30 $PY -m deeptui quickstart --headless --device "$DEVICE" --log-dir "$OUT/runs/unfreeze" \
    --set optimizer.name='"momentum"' --set perf.fused=true --set data.train_size=$SHAPES --set data.test_size=500 \
    --epochs 3
stage resume 90 30 "${PYTEST[@]}" tests/test_resume_settings.py
stage lbfgs-cl 45 20 "${PYTEST[@]}" tests/test_device_parity.py -k "lbfgs_trains_under_channels_last or lbfgs_says"
stage sync-free 60 30 "${PYTEST[@]}" "${SYNC_FREE[@]}"
stage sync-adam 60 30 "${PYTEST[@]}" "${SYNC_ADAM[@]}"
stage dataloader 60 30 "${PYTEST[@]}" tests/test_device_parity.py -k dataloader_path
mkdir -p "$OUT/nccl"
stage nccl 60 30 bash -c "GLOO_SOCKET_IFNAME=lo NCCL_SOCKET_IFNAME=lo DEEPTUI_TEST_DEVICE=$DEVICE \
    $PY -m torch.distributed.run --standalone --nproc-per-node 1 tests/dist_worker.py '$OUT/nccl' $NCCL_MODE \
    && grep -q '\"final_state\": \"finished\"' '$OUT/nccl/rank0.json'"
ROW=',cpu,'
[ "$DEVICE" = cuda ] && ROW=',cuda:0,[0-9]'
stage machine 45 20 bash -c "$PY -m deeptui quickstart --headless --device $DEVICE --log-dir '$OUT/runs/machine' \
    --max-steps $STEPS --set data.train_size=$SHAPES --set log.interval=2 --set run.auto_timing=false \
    && grep -q '$ROW' '$OUT'/runs/machine/*/system.csv"

# ---- correctness of the numbers, then timings ---------------------------------------------
stage parity 150 60 env NVIDIA_TF32_OVERRIDE=0 "${PYTEST[@]}" tests/test_device_parity.py -k device_branch
stage bench 60 20 $PY -m deeptui bench --device "$DEVICE" --repeats 21
stage overhead 120 60 $PY benchmarks/overhead.py --device "$DEVICE" --rounds $ROUNDS --seconds 2 \
    --variants "$VARIANTS" "${OVERHEAD[@]}"
stage monster 120 60 $PY benchmarks/train_speed.py --device "$DEVICE" --steps $STEPS --warmup $WARMUP \
    --images $IMAGES --blocks $BLOCKS --repeats $REPEATS
stage compile 120 60 $PY benchmarks/train_speed.py --device "$DEVICE" --steps $STEPS --warmup $((WARMUP * 2)) \
    --images $IMAGES --blocks $BLOCKS --repeats 1 --compile --paths lecture,fast

echo "gpu_check: $((SECONDS - START))s of a ${BUDGET}s budget; the table and every stage's log are in $OUT"
exit $FAILED
