#!/bin/sh
# Remakes calibration/across-subjects.json, the README's across-subject tables and
# docs/image-comparison.png: three simulated subjects (brainmclip's own simulator, seeds 0-2; not
# real data), each calibrated with BrainMCLIP's targets and with the final-only ablation, the
# three comparison generators, and `eval` with the ridge baseline and the images. Settings were
# chosen on the demo subject's validation split (calibration/demo/calibrate.toml's [select]); no
# step looks at test trials before `eval`. About 4 h on a 2-core CPU. Run from the repository
# root; each step resumes or is skipped if its output exists.
set -eu
bm() { cargo run --release -- "$@"; }
for seed in 0 1 2; do
  dir=sim-s$seed; [ $seed = 0 ] && dir=sim-demo
  [ -d $dir ] || bm simulate --out $dir --seed $seed --train-runs 36 --test-runs 5
done
[ -f calibration/demo/projector.mpk ] || bm calibrate --config calibration/demo/calibrate.toml
[ -f demo-ablation/projector.mpk ] || bm calibrate --config calibration/demo/final-only.toml
for seed in 1 2; do
  for targets in multi final-only; do
    [ -f runs/sim-s$seed-$targets/projector.mpk ] ||
      bm calibrate --config calibration/sim-s$seed/$targets.toml
  done
done
for g in a-embedding-only b-final-tokens c-intermediate-tokens; do
  out=runs/generator-$(echo $g | cut -c1)
  [ -f $out/generator.mpk ] || bm train-generator --encoder assets/demo-encoder \
    --config calibration/generator/compare-$g.toml --out $out
done
bm eval \
  --config calibration/demo/calibrate.toml --config calibration/demo/final-only.toml \
  --config calibration/sim-s1/multi.toml --config calibration/sim-s1/final-only.toml \
  --config calibration/sim-s2/multi.toml --config calibration/sim-s2/final-only.toml \
  --ridge --images runs/generator-a --images runs/generator-b --images runs/generator-c \
  --images assets/demo-generator --figure docs/image-comparison.png \
  --json calibration/across-subjects.json
