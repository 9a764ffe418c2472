#!/usr/bin/env bash
# A real window: starts `brainmclip demo --speed 10` under Xvfb, waits until reconstructions
# are being drawn, and takes two screenshots of the screen 4 s apart (ImageMagick's import).
# Usage: xvfb_demo.sh BRAINMCLIP_BINARY OUT_DIR   (writes OUT_DIR/shot1.png, shot2.png, demo.log)
# Needs: xvfb (xvfb-run), imagemagick, a Vulkan or GL driver (Debian: mesa-vulkan-drivers).
set -euo pipefail
bin=$1
out=$2
mkdir -p "$out"
exec xvfb-run -a -s "-screen 0 1280x800x24" bash -c '
  set -euo pipefail
  bin=$1; out=$2
  "$bin" demo --speed 10 --out "$out/demo" >"$out/demo.log" 2>&1 &
  demo=$!
  trap "kill $demo 2>/dev/null || true" EXIT
  drawn() { ls "$out/demo/session/reconstructions" 2>/dev/null | grep -c "\.png$" || true; }
  for _ in $(seq 1 600); do
    [ "$(drawn)" -ge 3 ] && break
    kill -0 $demo 2>/dev/null || { echo "demo exited early:"; cat "$out/demo.log"; exit 1; }
    sleep 0.5
  done
  [ "$(drawn)" -ge 3 ] || { echo "no reconstructions after 300 s:"; cat "$out/demo.log"; exit 1; }
  sleep 1
  import -window root "$out/shot1.png"
  sleep 4
  import -window root "$out/shot2.png"
  echo "reconstructions drawn by the second screenshot: $(drawn)"
' bash "$bin" "$out"
