#!/usr/bin/env bash
# The checks that need an NVIDIA GPU, as one script for the device machine (binaries built here
# with `--features cuda`, see README "Benchmarks"). Every figure is taken beside the same
# machine's CPU in the same run.
#   1. `decoders` bench on the GPU: projector at NSD size, generator 4-step at 64x64 and at the
#      real-size 256x256 config, with the largest CPU/GPU output difference for equal weights.
#   2. `calibrate` on a small simulated subject with --device cuda and --device cpu: samples/s,
#      and the decoding metrics of both.
#   3. `train-generator` steps with --device cuda and --device cpu: seconds per step.
#   4. `real_size` bench with --device cuda: the live chain at real size, per-stage medians
#      (NSD-size projector, real-size generator 4 steps) and volume closed -> image p50/p95.
#   5. `torch`: bench/torch_twin.py, a PyTorch twin of the real-size generator and the NSD-size
#      projector (same shapes and parameter counts, random weights), strict f32 and then TF32,
#      beside step 4's figures. Needs `import torch` to work on the device machine (it has no
#      internet); without it, that is written to torch.txt and the script goes on.
#   6. `unclip` bench with --device cuda: Karlo's decoder and super-resolution UNets at their
#      real size, one pass each, and one image at decode.steps 4 (bench/unclip.rs).
# BIN_DIR holds `brainmclip` (target/release/brainmclip) and the bench executables `decoders`,
# `real_size` and `unclip` (target/release/deps/decoders-<hash>, real_size-<hash> and unclip-<hash> from
# `cargo bench --features cuda --no-run`, copied under those names). Run from the repository
# root (calibrate reads assets/demo-encoder).
# Usage: bench/gpu.sh BIN_DIR OUT_DIR
#   (GPU_STEPS="decoders real_size unclip torch calibrate generator" picks parts; that is the default)
set -uo pipefail
bin=$(cd "$1" && pwd)
out=$2
mkdir -p "$out"
# Python keeps the caller's library path: the CUDA/system directories put in front below would
# win over the libraries torch ships (LD_LIBRARY_PATH beats RUNPATH) or even over python's own
# libpython (a pyenv build then runs the system interpreter, without torch).
py() { env LD_LIBRARY_PATH="$py_ld" python3 "$@"; }
py_ld=${LD_LIBRARY_PATH:-}
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/lib/x86_64-linux-gnu; do
  [ -d "$d" ] && export LD_LIBRARY_PATH="$d:${LD_LIBRARY_PATH:-}"
done
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$out/gpu.txt" 2>&1
nproc >>"$out/gpu.txt"
step() { echo "== $1 ($(date +%T))"; }
wanted() { [[ " ${GPU_STEPS:-decoders real_size unclip torch calibrate generator} " == *" $1 "* ]]; }
here=$(cd "$(dirname "$0")" && pwd)

if wanted decoders; then
step decoders
timeout 150 "$bin/decoders" --bench --gpu-only >"$out/decoders.txt" 2>&1
echo "rc $?" >>"$out/decoders.txt"
fi

if wanted real_size; then
step real_size
# `--bench` is what cargo passes; without it the binary only prints that the smoke run is skipped.
timeout 180 "$bin/real_size" --bench --device cuda >"$out/real_size.txt" 2>&1
echo "rc $?" >>"$out/real_size.txt"
fi

if wanted unclip; then
step unclip
timeout 240 "$bin/unclip" --bench --device cuda >"$out/unclip.txt" 2>&1
echo "rc $?" >>"$out/unclip.txt"
fi

if wanted torch; then
step torch
if py -c 'import torch' >/dev/null 2>&1; then
  timeout 120 env LD_LIBRARY_PATH="$py_ld" python3 "$here/torch_twin.py" --device cuda --runs 20 --json "$out/torch.json" >"$out/torch.txt" 2>&1
  echo "rc $?" >>"$out/torch.txt"
  timeout 120 env LD_LIBRARY_PATH="$py_ld" python3 "$here/torch_twin.py" --device cuda --runs 20 --tf32 --json "$out/torch-tf32.json" >"$out/torch-tf32.txt" 2>&1
  echo "rc $?" >>"$out/torch-tf32.txt"
else
  echo "torch step skipped: python3 cannot import torch on this machine ($(py --version 2>&1))" >"$out/torch.txt"
fi
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
