#!/usr/bin/env bash
# The checks that need an NVIDIA GPU, as one script for the device machine (binaries built here
# with `--features cuda`, see README "Benchmarks"). Every figure is taken beside the same
# machine's CPU in the same run.
#   1. `decoders` bench on the GPU: projector at NSD size, generator 4-step at 64x64 and at the
#      real-size 256x256 config, with the largest CPU/GPU output difference for equal weights.
#   2. `calibrate` on a small simulated subject with --device cuda and --device cpu: samples/s,
#      and the decoding metrics of both.
#   3. `train-generator` steps with --device cuda and --device cpu: seconds per step.
# Usage: bench/gpu.sh BIN_DIR OUT_DIR   (GPU_STEPS="decoders calibrate generator" picks parts)
set -uo pipefail
bin=$(cd "$1" && pwd)
out=$2
mkdir -p "$out"
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu; do
  [ -d "$d" ] && export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
done
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$out/gpu.txt" 2>&1
nproc >>"$out/gpu.txt"
step() { echo "== $1 ($(date +%T))"; }
wanted() { [[ " ${GPU_STEPS:-decoders calibrate generator} " == *" $1 "* ]]; }

if wanted decoders; then
step decoders
timeout 150 "$bin/decoders" --bench --gpu-only >"$out/decoders.txt" 2>&1
echo "rc $?" >>"$out/decoders.txt"
fi

work=$(mktemp -d)
if wanted calibrate; then
step simulate
timeout 90 "$bin/brainmclip" simulate --out "$work/sim" --seed 0 --train-runs 3 --test-runs 1 >"$out/simulate.txt" 2>&1
echo "rc $?" >>"$out/simulate.txt"
cat >"$work/cal.toml" <<TOML
bids = "sim"
subject = "01"
encoder = "$PWD/assets/demo-encoder"
out = "cal"
[train]
seed = 1
epochs = 30
TOML
for device in cuda cpu; do
  step "calibrate $device"
  timeout 80 "$bin/brainmclip" calibrate --config "$work/cal.toml" --device $device --out "$work/cal-$device" >"$out/calibrate-$device.txt" 2>&1
  echo "rc $?" >>"$out/calibrate-$device.txt"
  cp "$work/cal-$device/report.json" "$out/calibrate-$device-report.json" 2>/dev/null
done
fi

if wanted generator; then
for device in cuda cpu; do
  step "train-generator $device"
  steps=40; [ $device = cpu ] && steps=4
  timeout 60 "$bin/brainmclip" train-generator --encoder assets/demo-encoder --out "$work/gen-$device" --steps 2000 --max-steps $steps --device $device >"$out/generator-$device.txt" 2>&1
  echo "rc $?" >>"$out/generator-$device.txt"
done
fi
step done
