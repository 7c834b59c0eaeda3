#!/usr/bin/env bash
# A GPU session's checks as one prepared command, in two halves:
#
#   bash benchmarks/gpu_session.sh fetch        # here, where pip reaches the package registry
#   bash benchmarks/gpu_session.sh run [ARGS]   # on the CUDA machine (the device tool: carry [".whl"])
#
# fetch: the one dependency the lent GPU machines lack (PyAV; their image has torch, numpy, PyYAML, safetensors,
#   tqdm and matplotlib) as a wheel for their Python (PYVER, default 3.12) into .whl/ (git-ignored).
# run: installs the carried wheels into /tmp/site next to the machine's own torch, puts src/ on PYTHONPATH (no
#   pip install of vjepa: nothing can be fetched there), and then
#   1. env.txt: torch, CUDA and the GPU;
#   2. e2e.txt: the commands end to end on the GPU, paths that CI's CPU-only machines never take: `vjepa
#      make-data`; `vjepa pretrain` from mp4 files with 2 loader workers and pinned batches, stopped by SIGTERM
#      (checkpoint), then resumed to the end; the same under torchrun with `runtime.strategy=fsdp` (sharded
#      checkpoints, the bf16 parameter policy, fused AdamW on DTensor shards); `vjepa eval` (attentive probe)
#      on the export;
#   3. gpu.txt: `python benchmarks/gpu.py --budget-s BUDGET ARGS` (the table of docs/distributed.md; BUDGET
#      default 200 s: no setting starts after it; the one running then finishes, and the data rows follow).
#   Give the device tool's call a timeout of about 590 s: what is printed before a timeout still comes back.
#   Each part's log goes to $OUT (the device tool's output folder) or ./gpu-session; the script goes on after
#   a failed part and exits non-zero at the end if any part failed.
#
# Rehearse both halves on a CPU (the gpu.py part then runs its --smoke mode):
#   PYVER=3.11 bash benchmarks/gpu_session.sh fetch && DEVICE=cpu bash benchmarks/gpu_session.sh run
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

fetch() {
    rm -rf .whl && mkdir -p .whl
    local platforms=()
    for p in manylinux_2_28_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
        platforms+=(--platform "$p")
    done
    "$PY" -m pip download -q --no-deps --only-binary=:all: --implementation cp --python-version "${PYVER:-3.12}" \
        "${platforms[@]}" -d .whl "av>=12" || exit 1
    ls -l .whl
}

say() {  # print a command, then run it
    echo "+ $*"
    "$@"
}

e2e() {
    local dev=$1 tmp
    tmp=$(mktemp -d)
    local common=(--set "runtime.device=$dev" --set data.source=csv --set "data.datasets=[$tmp/data/train.csv]"
        --set data.num_workers=2 --set optimization.epochs=50 --set optimization.ipe=4
        --set logging.checkpoint_every=4 --set logging.log_every=20)
    say "$PY" -m vjepa make-data synthetic "$tmp/data" --num-train 64 --num-val 32 || return 1
    for strategy in single fsdp; do
        local run=$tmp/run_$strategy launcher=("$PY" -m vjepa) extra=()
        if [ "$strategy" = fsdp ]; then
            launcher=("$PY" -m torch.distributed.run --standalone --nproc_per_node=1 -m vjepa)
            extra=(--set runtime.strategy=fsdp)
        fi
        echo "+ ${launcher[*]} pretrain tiny_cpu --run-dir $run ${common[*]} ${extra[*]} &"
        "${launcher[@]}" pretrain tiny_cpu --run-dir "$run" "${common[@]}" "${extra[@]}" &  # $! is the process
        local pid=$! waited=0
        # SIGTERM once the first checkpoint is there: the run saves again after its current step and stops.
        # A run that has died is not waited for.
        until [ -n "$(ls -A "$run/checkpoints" 2>/dev/null)" ] || [ $waited -ge 300 ]; do
            kill -0 $pid 2>/dev/null || break
            sleep 1
            waited=$((waited + 1))
        done
        echo "+ kill -TERM $pid (after ${waited} s)"
        kill -TERM $pid
        wait $pid
        echo "exit status after SIGTERM: $? (vjepa pretrain: 143; torchrun reports its workers' stop as 1)"
        ls -l "$run/checkpoints"
        say "${launcher[@]}" pretrain --run-dir "$run" --resume "${common[@]}" "${extra[@]}" || return 1
    done
    say "$PY" -m vjepa eval synthetic_motion --set "encoder.checkpoint=$tmp/run_fsdp" \
        --set "data.train=$tmp/data/train_motion.csv" --set "data.val=$tmp/data/val_motion.csv" \
        --set "cache.dir=$tmp/cache" --set "output_dir=$tmp/eval" --set "device=$dev" || return 1
    "$PY" -c "import json, sys; m = json.load(open(sys.argv[1])); print('precision', m['precision']);
[print(r['name'], r['status'], 'top1', r['top1']) for r in m['selected']]" "$tmp/eval/metrics.json" || return 1
    rm -rf "$tmp"
}

run() {
    local out=${OUT:-gpu-session} dev=${DEVICE:-cuda} failed=0
    mkdir -p "$out"
    if ls .whl/*.whl >/dev/null 2>&1; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            .whl/*.whl || exit 1
        export PYTHONPATH=/tmp/site:$PWD/src
    else
        export PYTHONPATH=$PWD/src
    fi
    export PYTHONUNBUFFERED=1
    {
        nvidia-smi 2>&1 | head -15
        "$PY" -c "import torch, av; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available',
            torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '',
            'PyAV', av.__version__)"
        nproc
    } 2>&1 | tee "$out/env.txt"
    local smoke=()
    [ "$dev" = cpu ] && smoke=(--smoke)
    # the short end-to-end check first: a run cut short by the machine's time limit loses table rows, not it
    e2e "$dev" > >(tee "$out/e2e.txt") 2>&1 || failed=1
    "$PY" benchmarks/gpu.py "${smoke[@]}" --budget-s "${BUDGET:-200}" "$@" 2>&1 | tee "$out/gpu.txt" || failed=1
    echo "gpu_session: $([ $failed = 0 ] && echo all parts passed || echo A PART FAILED: see the logs in "$out")"
    exit $failed
}

case "${1:-}" in
    fetch) fetch ;;
    run) shift; run "$@" ;;
    *) echo "usage: bash benchmarks/gpu_session.sh fetch | run [gpu.py arguments]" >&2; exit 2 ;;
esac
