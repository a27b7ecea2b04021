#!/usr/bin/env bash
# GPU check for a machine with an NVIDIA GPU, in at most 8 minutes:
#   (a) nvidia-smi;
#   (b) CaffeNet training throughput (images/s) at batch 256 on synthetic uint8 227x227 crops:
#       fp32 vs bf16 autocast, each with and without channels_last, and their ratios;
#   (c) the demo sweep with fractional GPUs (4 trials share one GPU), with GPU sampling.
# Usage, from anywhere:  bash bench/gpu_check.sh
# When $OUT is set, everything printed is also written to $OUT/gpu_check.log.
# Every step has its own `timeout`, capped by what is left of the overall budget; a failing
# step is reported and the next one still runs. The exit code is the number of failed steps.

set -uo pipefail

BUDGET_S=${BUDGET_S:-460}          # 8 minutes minus a margin for the summary
SETUP_S=150                        # venv + pip (only when something is missing)
BENCH_S=150                        # throughput
SWEEP_S=210                        # demo sweep
# Edit here if the demo sweep's command line changes.
TS=(transfer-sweep)                # `python -m orchestrator.cli` when the script is missing
SWEEP_ARGS=(run sweeps/demo.yaml --store /tmp/gpu-store
            --set resources.gpus=0.25 --set resources.cpus=1)

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
if [[ -n "${OUT:-}" ]]; then
    mkdir -p "$OUT"
    exec > >(tee -a "$OUT/gpu_check.log") 2>&1
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
        ((rc == 124 || rc == 137)) && echo "--- $name: TIMED OUT after ${limit}s"
        echo "--- $name: FAILED (exit $rc)"
        FAILED+=("$name")
    else
        echo "--- $name: ok ($((SECONDS - t0)) s)"
    fi
    return "$rc"
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

echo "gpu_check: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname), repo $(pwd)"

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

step "nvidia-smi" 20 nvidia-smi

step "caffenet throughput" "$BENCH_S" python - <<'PY'
"""CaffeNet training steps/s at batch 256: fp32 vs bf16 autocast, NCHW vs channels_last."""
import time

import torch
import torch.nn.functional as F

from workers.models import build_model

assert torch.cuda.is_available(), "no CUDA device visible to torch"
dev = torch.device("cuda")
torch.backends.cudnn.benchmark = True
print(f"device {torch.cuda.get_device_name(0)}, torch {torch.__version__}, "
      f"bf16 supported {torch.cuda.is_bf16_supported()}, "
      f"cudnn.allow_tf32 {torch.backends.cudnn.allow_tf32}, "
      f"matmul.allow_tf32 {torch.backends.cuda.matmul.allow_tf32}")

BATCH, WARMUP, STEPS = 256, 8, 30
SETTINGS = {"arch": "caffenet", "num_outputs": 1000, "widths": [96, 256, 384, 384, 256],
            "fc_width": 4096, "dropout": 0.5, "init": "caffe"}
# Synthetic uint8 crops already on the GPU, normalised per step as the loader does: this
# measures the network, not the input pipeline.
gen = torch.Generator(device=dev).manual_seed(0)
images = torch.randint(0, 256, (BATCH, 3, 227, 227), dtype=torch.uint8, device=dev, generator=gen)
labels = torch.randint(0, 1000, (BATCH,), device=dev, generator=gen)
mean = torch.tensor([123.7, 116.3, 103.5], device=dev).view(1, 3, 1, 1)


def images_per_second(bf16: bool, channels_last: bool) -> float:
    torch.manual_seed(0)
    model = build_model(SETTINGS).to(dev)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def one_step():
        x = (images.float() - mean).contiguous(memory_format=fmt)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(model(x), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    for _ in range(WARMUP):
        one_step()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(STEPS):
        loss = one_step()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    assert torch.isfinite(loss).item(), f"loss is {loss.item()}"
    return BATCH * STEPS / dt


results = {}
for bf16 in (False, True):
    for cl in (False, True):
        name = f"{'bf16' if bf16 else 'fp32'} {'channels_last' if cl else 'NCHW'}"
        torch.cuda.reset_peak_memory_stats()
        ips = images_per_second(bf16, cl)
        results[(bf16, cl)] = ips
        print(f"{name:<20} {ips:9.0f} images/s   peak {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")

print(f"bf16/fp32 (NCHW):          {results[(True, False)] / results[(False, False)]:.2f}x")
print(f"bf16/fp32 (channels_last): {results[(True, True)] / results[(False, True)]:.2f}x")
print(f"channels_last/NCHW (fp32): {results[(False, True)] / results[(False, False)]:.2f}x")
print(f"channels_last/NCHW (bf16): {results[(True, True)] / results[(True, False)]:.2f}x")
best = max(results, key=results.get)
print(f"best: {'bf16' if best[0] else 'fp32'} {'channels_last' if best[1] else 'NCHW'} "
      f"{results[best]:.0f} images/s = {results[best] * 3600 / 645e3:.1f} epochs/h of one "
      f"ImageNet half (~645k images)")
PY

# (c) demo sweep. A background sampler prints GPU use and the number of processes on the GPU
# every 5 s: with gpus=0.25, up to 4 trials should share it.
sample_gpu() {
    while true; do
        echo "$(date -u +%T) util,mem: $(nvidia-smi --query-gpu=utilization.gpu,memory.used \
--format=csv,noheader 2>&1 | head -n 1) processes: $(nvidia-smi --query-compute-apps=pid \
--format=csv,noheader 2>/dev/null | wc -l)"
        sleep 5
    done
}
rm -rf /tmp/gpu-store
sample_gpu > /tmp/gpu_check_samples.txt 2>&1 &
SAMPLER_PID=$!
step "demo sweep (gpus=0.25)" "$SWEEP_S" "${TS[@]}" "${SWEEP_ARGS[@]}"
kill "$SAMPLER_PID" 2>/dev/null
wait "$SAMPLER_PID" 2>/dev/null
echo "GPU samples during the sweep:"
cat /tmp/gpu_check_samples.txt
step "sweep status" 30 "${TS[@]}" status demo --store /tmp/gpu-store

echo
echo "=== summary: $((SECONDS - START)) s, failed steps: ${#FAILED[@]}${FAILED[*]:+ (${FAILED[*]})} ==="
exit "${#FAILED[@]}"
