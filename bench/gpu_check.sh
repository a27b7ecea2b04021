#!/usr/bin/env bash
# GPU check for a machine with an NVIDIA GPU, in at most 10 minutes. It measures the whole path a
# training's images take, not only the model, because that path is what has to reach 15k images/s:
#   (a) nvidia-smi;
#   (b) a synthetic ImageNet-layout folder (20 classes x 72 JPEGs of 300x400-ish pixels), prepared by
#       the real `transfer-sweep data prepare imagenet` twice: --format jpeg and --format raw;
#   (c) images/s per GPU, each with its ratio to 15k (bench/gpu_data_path.py, the trainings' own
#       loader): the data path alone (shards -> decode -> crop/mirror/mean on the GPU) for JPEG and raw
#       shards; then the full step (data path + CaffeNet forward/backward/SGD at batch 256) for fp32
#       NCHW, fp32 channels_last, bf16 channels_last and bf16 channels_last + torch.compile;
#   (d) the demo sweep with fractional GPUs (4 trials share one GPU), with GPU sampling, and its status;
#   (e) the Ray-free path (workers/loop.py, torch alone): one converged trial of sweeps/dip-gpu.yaml
#       timed (a 40-epoch base), then a slice of it (unit random:0,0: its 2 bases and 16 dependents,
#       4 at a time on the GPU), from a trials file exported where the orchestrator is installed.
# On a machine with torch but no Ray or pydantic (a lent accelerator), (b)-(d) are skipped, saying so,
# and (e) runs from GPU_TRIALS (a `transfer-sweep plan sweeps/dip-gpu.yaml --export FILE`) into
# GPU_STORE (a store folder holding datasets/fashion-animals/, copied from a store that ran it):
#   GPU_TRIALS=.gpu/dip-gpu.json GPU_STORE=.gpu/store bash bench/gpu_check.sh   (docs/cluster.md)
# Usage, from anywhere:  bash bench/gpu_check.sh
# When $OUT is set, everything printed is also written to $OUT/gpu_check.log. Sources and stores go to
# a fresh folder under $TMPDIR (default /tmp), removed at the end unless KEEP_WORK=1.
# DRY_RUN=1 runs every step on the CPU at toy sizes (nvidia-smi skipped, a 3-trial sweep without
# GPUs), so that the script is known to run end to end before a GPU machine is paid for; there,
# SKIP_SWEEP=1 also skips the sweep. Every step has its own `timeout`, capped by what is left of the
# overall budget; a failing step is reported and the next one still runs. The exit code is the number
# of failed steps.

set -uo pipefail

BUDGET_S=${BUDGET_S:-570}          # 10 minutes minus a margin for the summary and the clean-up
SETUP_S=150                        # venv + pip (only when something is missing)
SOURCE_S=60                        # synthetic JPEGs (a few seconds on 16 cores)
PREPARE_S=90                       # each of the two preparations (local Ray start included)
BENCH_S=240                        # data path + CaffeNet; torch.compile is most of it
SWEEP_S=240                        # demo sweep: 23 trainings, 4 at a time on one GPU
ONE_TRIAL_S=150                    # (e) one 40-epoch base of the small net
SLICE_S=330                        # (e) one unit of dip-gpu.yaml: 18 trainings, 4 at a time
LOOP_WORKERS=4
DRY_RUN=${DRY_RUN:-0}
SKIP_SWEEP=${SKIP_SWEEP:-0}
# Sizes: the GPU run's source gives a half of 10 classes x 64 images, so batches of 256 cycle
# through an epoch that stays in the page cache, as a node's half of ImageNet does.
CLASSES=20 TRAIN_PER_CLASS=64 VAL_PER_CLASS=8 SHARD_SIZE=128 BATCH=256 WARMUP=5 STEPS=30
# Edit here if the demo sweep's command line changes.
TS=(transfer-sweep)                # `python -m orchestrator.cli` when the script is missing
SWEEP_ARGS=(run sweeps/demo.yaml --set resources.gpus=0.25 --set resources.cpus=1)
if [[ $DRY_RUN != 0 ]]; then
    CLASSES=4 TRAIN_PER_CLASS=8 VAL_PER_CLASS=2 SHARD_SIZE=16 BATCH=8 WARMUP=1 STEPS=2
    # No GPU to share: the same command with 0 GPUs, cut to 3 trainings of 4 steps of a tiny net.
    SWEEP_ARGS+=(--set resources.gpus=0 --set 'splits=["random:0"]' --set 'treatments=[base, transfer]'
                 --set 'layers=[4]' --set train.epochs=null --set train.iterations=4
                 --set train.eval_every=2 --set train.checkpoint_every=2
                 --set 'model.widths=[8, 8, 8, 8, 8]' --set model.fc_width=32)
fi
# (e)'s trials: dip-gpu.yaml, or in a dry run the same design cut to 4-step trainings of a tiny net
EXPORT_ARGS=(plan sweeps/dip-gpu.yaml)
if [[ $DRY_RUN != 0 ]]; then
    EXPORT_ARGS+=(--set resources.gpus=0 --set resources.cpus=1 --set train.epochs=null --set train.iterations=4
                  --set train.eval_every=2 --set train.checkpoint_every=2 --set 'model.widths=[8, 8, 8, 8, 8]'
                  --set model.fc_width=32 --set 'layers=[2, 7]' --set 'seeds=[0]')
    LOOP_WORKERS=2
fi
export DRY_RUN                     # bench/gpu_data_path.py reads it too

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
TEE_PID=
if [[ -n "${OUT:-}" ]]; then
    mkdir -p "$OUT"
    exec > >(tee -a "$OUT/gpu_check.log") 2>&1
    TEE_PID=$!
fi

FAILED=()
START=$SECONDS

left() {  # seconds left of the budget, never below 1
    local l=$((BUDGET_S - (SECONDS - START)))
    ((l < 1)) && l=1
    echo "$l"
}

cap() {  # min(step limit, time left)
    local want=$1 l
    l=$(left)
    ((want < l)) && echo "$want" || echo "$l"
}

step() {  # step NAME LIMIT CMD...: run CMD under timeout, record a failure
    local name=$1 limit rc t0=$SECONDS
    limit=$(cap "$2")
    shift 2
    echo
    echo "=== $name (limit ${limit}s, $(left)s of budget left) ==="
    timeout --kill-after=10 "$limit" "$@"
    rc=$?
    if ((rc != 0)); then
        if ((rc == 124 || rc == 137)); then
            echo "--- $name: TIMED OUT after ${limit}s"
            # a killed CLI leaves its private Ray running: it would slow every later step
            stop_leftover_ray
        fi
        echo "--- $name: FAILED (exit $rc)"
        FAILED+=("$name")
    else
        echo "--- $name: ok ($((SECONDS - t0)) s)"
    fi
    return "$rc"
}

skip() {  # skip NAME REASON
    echo
    echo "=== $1: skipped ($2) ==="
}

setup_env() {
    # Reuse the project's venv; else a new one that sees the system's (CUDA) torch.
    if [[ ! -x .venv/bin/python ]]; then
        python3 -m venv --system-site-packages .venv || return 1
    fi
    # shellcheck disable=SC1091
    source .venv/bin/activate || return 1
    if ! python -c 'import torch' 2>/dev/null; then
        echo "torch missing: pip install torch"
        pip install torch || return 1
    fi
    if ! python -c 'import orchestrator.cli, workers.models' 2>/dev/null \
        || ! command -v transfer-sweep >/dev/null; then
        # Without network, only an install without build isolation can work.
        pip install -e . || pip install --no-build-isolation -e . || return 1
    fi
    python -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
"available", torch.cuda.is_available())'
    if ! python -c 'import torch, sys; sys.exit(not torch.cuda.is_available())' \
        && command -v nvidia-smi >/dev/null; then
        echo "WARNING: a GPU is present but this torch cannot use it (a CPU build in .venv?)"
    fi
}

# Everything this run keeps until the end (source, stores) goes to one folder of its own, so two
# runs, or a test next to a real run, never share a store.
WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX") || exit 1
SRC=$WORK/src STORE_JPEG=$WORK/store-jpeg STORE_SWEEP=$WORK/store-sweep STORE_RAW=$WORK/store-raw
# Scratch for every process below: the temp dir of each Ray this script starts (the two
# preparations, the sweep: each a private local Ray) and everyone's TMPDIR. Short, because Ray's
# and multiprocessing's socket paths are limited to 107 bytes; ours, so that a step cut off by its
# timeout leaves nothing running (stop_leftover_ray ends the processes that name it) or lying about.
SCRATCH_BASE=${TMPDIR:-/tmp}
((${#SCRATCH_BASE} > 40)) && SCRATCH_BASE=/tmp
SCRATCH=$(mktemp -d "$SCRATCH_BASE/ts-gc.XXXXXX") || { rm -rf "$WORK"; exit 1; }
mkdir -p "$SCRATCH/ray" "$SCRATCH/tmp"
export TRANSFER_SWEEP_RAY_TMP=$SCRATCH/ray TMPDIR=$SCRATCH/tmp
unset RAY_ADDRESS                  # a Ray Job's or a shell's cluster would be measured instead
SAMPLER_PID=

stop_leftover_ray() {  # between steps: whatever still names $SCRATCH is a leftover of ours
    local p pid n=0
    for p in /proc/[0-9]*; do
        pid=${p#/proc/}
        [[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
        if grep -qsF "$SCRATCH" "$p/cmdline" || grep -qsF "$SCRATCH" "$p/environ"; then
            kill -9 "$pid" 2>/dev/null && n=$((n + 1))
        fi
    done
    ((n == 0)) || echo "stopped $n leftover processes of this run ($SCRATCH)"
}

clean_up() {
    [[ -n $SAMPLER_PID ]] && kill "$SAMPLER_PID" 2>/dev/null
    stop_leftover_ray
    rm -rf "$SCRATCH"
    if [[ ${KEEP_WORK:-0} != 0 ]]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap clean_up EXIT
trap 'exit 130' INT                # so that the EXIT trap cleans up after Ctrl-C or a kill too
trap 'exit 143' TERM

echo "gpu_check: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname), repo $(pwd), work $WORK, scratch $SCRATCH$(
    [[ $DRY_RUN != 0 ]] && echo ", DRY_RUN (CPU, toy sizes)")"

# Setup runs in this shell (not under `step`) so that the venv stays active afterwards; its
# pip commands carry their own timeouts instead.
echo
echo "=== setup ==="
export PIP_DISABLE_PIP_VERSION_CHECK=1
pip() { timeout "$(cap "$SETUP_S")" python -m pip "$@"; }
# The repo on the path, so the checks below can run even if the install failed.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if setup_env; then echo "--- setup: ok"; else echo "--- setup: FAILED"; FAILED+=(setup); fi
unset -f pip
command -v transfer-sweep >/dev/null || TS=(python -m orchestrator.cli)
# Without Ray and pydantic only the Ray-free path (e) can run: the rest is skipped, not failed.
RAY_FREE=0
if ! python -c 'import ray, pydantic, orchestrator.cli' 2>/dev/null; then
    RAY_FREE=1
    echo "no Ray or pydantic here: only the Ray-free steps (e) run"
fi
if [[ $DRY_RUN != 0 ]]; then
    # Nothing outside $WORK and $SCRATCH: Tune's ~/ray_results, the data cache.
    export HOME=$WORK/home TRANSFER_SWEEP_CACHE=$WORK/cache
    mkdir -p "$HOME"
fi

if [[ $DRY_RUN != 0 ]]; then
    skip "nvidia-smi" "DRY_RUN: no GPU needed"
else
    step "nvidia-smi" 20 nvidia-smi
fi

if [[ $RAY_FREE == 0 ]]; then
# (b) The source is made here, not shipped: ~70 MB of JPEGs whose warp to 256x256 is real work.
step "synthetic source" "$SOURCE_S" python bench/gpu_data_path.py source "$SRC" --classes "$CLASSES" \
    --train "$TRAIN_PER_CLASS" --val "$VAL_PER_CLASS"
# One store per format: a store's LATEST names one prepared version, the one the loader reads.
for fmt in jpeg raw; do
    store=$STORE_JPEG
    [[ $fmt == raw ]] && store=$STORE_RAW
    step "prepare $fmt shards" "$PREPARE_S" "${TS[@]}" data prepare imagenet --src "$SRC" --store "$store" \
        --format "$fmt" --shard-size "$SHARD_SIZE"
done

# (c) The figures are also kept apart, to be repeated after the sweep's long output.
step "data path + CaffeNet" "$BENCH_S" python bench/gpu_data_path.py measure --jpeg-store "$STORE_JPEG" \
    --raw-store "$STORE_RAW" --classes "$CLASSES" --batch "$BATCH" --warmup "$WARMUP" --steps "$STEPS" \
    --figures "$WORK/figures.txt"

# (d) demo sweep. A background sampler prints GPU use and the number of processes on the GPU
# every 5 s: with gpus=0.25, up to 4 trials should share it.
sample_gpu() {
    while true; do
        echo "$(date -u +%T) util,mem: $(nvidia-smi --query-gpu=utilization.gpu,memory.used \
--format=csv,noheader 2>&1 | head -n 1) processes: $(nvidia-smi --query-compute-apps=pid \
--format=csv,noheader 2>/dev/null | wc -l)"
        sleep 5
    done
}
if [[ $DRY_RUN != 0 && $SKIP_SWEEP != 0 ]]; then
    skip "demo sweep" "SKIP_SWEEP=1 in a dry run"
else
    [[ $SKIP_SWEEP == 0 ]] || echo "SKIP_SWEEP=$SKIP_SWEEP ignored: only a dry run may skip the sweep"
    gpus=0.25
    if [[ $DRY_RUN == 0 ]]; then
        sample_gpu > "$WORK/gpu_samples.txt" 2>&1 &
        SAMPLER_PID=$!
    else
        gpus=0
    fi
    step "demo sweep (gpus=$gpus)" "$SWEEP_S" "${TS[@]}" "${SWEEP_ARGS[@]}" --store "$STORE_SWEEP"
    if [[ -n $SAMPLER_PID ]]; then
        kill "$SAMPLER_PID" 2>/dev/null
        wait "$SAMPLER_PID" 2>/dev/null
        SAMPLER_PID=
        echo "GPU samples during the sweep:"
        cat "$WORK/gpu_samples.txt"
    else
        echo "GPU samples: none (DRY_RUN: no nvidia-smi)"
    fi
    step "sweep status" 30 "${TS[@]}" status demo --store "$STORE_SWEEP"
fi

else
    skip "synthetic source, preparations, data path, demo sweep" "no Ray or pydantic on this machine"
fi

# (e) The Ray-free loop. Its trials file comes from GPU_TRIALS or is exported here; its store holds
# the prepared fashion-animals (GPU_STORE, or a fresh one that the first trial fills from the system's
# dataset packages).
loop_trials=${GPU_TRIALS:-$WORK/dip-gpu.json}
STORE_LOOP=$WORK/store-loop
if [[ -n ${GPU_STORE:-} ]]; then
    mkdir -p "$STORE_LOOP" && cp -r "$GPU_STORE"/. "$STORE_LOOP"/
fi
if [[ -z ${GPU_TRIALS:-} && $RAY_FREE == 0 ]]; then
    step "export dip-gpu trials" 60 "${TS[@]}" "${EXPORT_ARGS[@]}" --export "$loop_trials"
fi
if [[ ! -f $loop_trials ]]; then
    skip "Ray-free loop" "no trials file: set GPU_TRIALS to a \`transfer-sweep plan sweeps/dip-gpu.yaml --export\`"
else
    step "one converged trial (Ray-free)" "$ONE_TRIAL_S" python -m workers.loop "$loop_trials" --store "$STORE_LOOP" \
        --limit 1
    step "dip-gpu slice random:0,0 (Ray-free, $LOOP_WORKERS at once)" "$SLICE_S" python -m workers.loop \
        "$loop_trials" --store "$STORE_LOOP" --unit random:0,0 --workers "$LOOP_WORKERS"
fi

echo
echo "=== figures (images/s per GPU, ratio to 15k) ==="
cat "$WORK/figures.txt" 2>/dev/null || echo "none: the data path + CaffeNet step failed"
echo
echo "=== summary: $((SECONDS - START)) s, failed steps: ${#FAILED[@]}${FAILED[*]:+ (${FAILED[*]})} ==="
clean_up
trap - EXIT
# The log is complete only when tee has written it all: a test reads it as soon as this exits.
if [[ -n $TEE_PID ]]; then
    exec >&- 2>&-
    wait "$TEE_PID"
fi
exit "${#FAILED[@]}"
