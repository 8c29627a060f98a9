#!/usr/bin/env bash
# The GPU checks (docs/gpu.md), run on a CUDA machine from the repository root, with the bundle made
# on a CPU machine by `cargo xtask gpu-bundle` (target/gpu-bundle.tar.xz, carried along). Needs a
# python3 with the torch 2.11.0 CUDA wheel (PYTHON, default /opt/torch/.venv/bin/python3); no cargo.
# Writes everything under OUT (default target/gpu-check): machine.txt, the tiny preset's run and log,
# CPU-vs-GPU parity of log-probs and reward scores (parity.txt), with FULL=1 the default preset, and
# with BENCH=1 the bf16 throughput bench against transformers (bench/). PRESETS=0 skips the tiny
# preset and the parity check.
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=${BUNDLE:-target/gpu-bundle.tar.xz}
OUT=$(mkdir -p "${OUT:-target/gpu-check}" && cd "${OUT:-target/gpu-check}" && pwd)
PY=${PYTHON:-/opt/torch/.venv/bin/python3}
[ -x "$PY" ] || PY=python3

work=$(mktemp -d)
tar -xJf "$BUNDLE" -C "$work"
BIN=$work/gpu-bundle/bin
site=$("$PY" -c 'import torch, os; print(os.path.dirname(os.path.dirname(torch.__file__)))')
libs=$site/torch/lib
for d in "$site"/nvidia/*/lib "$site"/nvidia/*/*/lib; do [ -d "$d" ] && libs=$libs:$d; done
export LD_LIBRARY_PATH=$libs${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.cuda.is_available())'
  nproc
} > "$OUT/machine.txt" 2>&1
cat "$OUT/machine.txt"
# GPU memory in use, sampled twice a second for the whole check (the peak goes into summary.txt).
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 500 > "$OUT/gpu-memory-mib.txt" 2>&1 &
  sampler=$!
  trap 'kill $sampler 2> /dev/null || true' EXIT
fi

if [ "${PRESETS:-1}" = 1 ]; then
# 1. The tiny preset end to end: every stage picks the GPU itself (--device auto).
t0=$SECONDS
"$BIN/xtask" pipeline --preset tiny --bin-dir "$BIN" --run-dir "$OUT/tiny" > "$OUT/tiny.log" 2>&1 \
  || { tail -30 "$OUT/tiny.log"; exit 1; }
echo "tiny preset on the GPU: $((SECONDS - t0)) s" | tee "$OUT/summary.txt"

# 2. Parity, f32 with TF32 off (libtorch's default for matmul): log-probs of the SFT policy and
#    scores of the reward model on the held-out demonstrations, GPU against CPU.
data=$OUT/tiny/data/demonstrations_heldout.parquet
GPU=${GPU_DEVICE:-cuda}  # GPU_DEVICE=cpu rehearses the script on a machine without one
for device in cpu "$GPU"; do
  "$BIN/rlhf-eval" logprobs --model "$OUT/tiny/sft/final" --data "$data" --out "$OUT/logprobs-$device.parquet" --device "$device"
  "$BIN/rlhf-reward" score --model "$OUT/tiny/rm/final" --data "$data" --out "$OUT/scores-$device.parquet" --device "$device"
done
column() { "$BIN/rlhf-data" inspect "$1" --rows 100000 | sed -n "s/^    $2: //p"; }
: > "$OUT/parity.txt"
for kind in logprobs scores; do
  name=$([ $kind = logprobs ] && echo logprob || echo reward)
  for device in cpu "$GPU"; do column "$OUT/$kind-$device.parquet" "$name" > "$OUT/$kind-$device.$name.txt"; done
  "$PY" - "$OUT/$kind-cpu.$name.txt" "$OUT/$kind-$GPU.$name.txt" "$kind" <<'PY' | tee -a "$OUT/parity.txt"
import sys
cpu = [float(v) for v in open(sys.argv[1]).read().split()]
gpu = [float(v) for v in open(sys.argv[2]).read().split()]
assert len(cpu) == len(gpu) > 0, (len(cpu), len(gpu))
worst = max(abs(a - b) for a, b in zip(cpu, gpu))
rel = max(abs(a - b) / max(abs(a), 1e-6) for a, b in zip(cpu, gpu))
print(f"{sys.argv[3]}: {len(cpu)} rows, max |cpu - gpu| {worst:.3e}, max relative {rel:.3e}")
PY
done
fi

# 3. The default preset (about 10 minutes on 2 CPU cores): FULL=1, cut off after FULL_TIMEOUT s.
if [ "${FULL:-0}" = 1 ]; then
  t0=$SECONDS
  timeout "${FULL_TIMEOUT:-1800}" "$BIN/xtask" pipeline --bin-dir "$BIN" --run-dir "$OUT/default" > "$OUT/default.log" 2>&1 \
    || { echo "default preset failed or timed out after $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"; tail -30 "$OUT/default.log"; exit 1; }
  echo "default preset on the GPU: $((SECONDS - t0)) s" | tee -a "$OUT/summary.txt"
  tail -25 "$OUT/default.log" >> "$OUT/summary.txt"
fi
# 4. Throughput in bf16 (tests/benches/gpu.rs) and the same workload in transformers: BENCH=1.
if [ "${BENCH:-0}" = 1 ]; then
  export RLHF_BENCH_DIR=$OUT/bench RLHF_BENCH_MODELS=$PWD/benches/models
  "$BIN/bench-gpu" 2>&1 | tee "$OUT/bench-gpu.log"
  "$PY" benches/peers/gpu_transformers.py 2>&1 | tee "$OUT/bench-peer.log"
fi
[ -s "$OUT/gpu-memory-mib.txt" ] && echo "peak GPU memory in use: $(sort -n "$OUT/gpu-memory-mib.txt" | tail -1) MiB" | tee -a "$OUT/summary.txt"
rm -rf "$work"
