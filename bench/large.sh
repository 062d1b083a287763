#!/usr/bin/env bash
# The large-file measurements of docs/BENCHMARKS.md ("Large files"): hyperat-import of
# torchvision's ViT-L/16 (one 1.2 GB file) and hyperat-import, hyperat-tune (one step) and
# hyperat-export of ViT-H/14 (2.5 GB of external data), each timed by /usr/bin/time -v (wall
# time, peak resident memory). The models are made once by bench/large_models.py (minutes,
# about 7 GB of memory for PyTorch) into DIR, never into the repository.
#
# usage: bash bench/large.sh DIR [vit_l_16] [vit_h_14]      (default: both)
#
# Needs /usr/bin/time (Debian's `time`), Go, and Debian's python3-torch, python3-torchvision
# and python3-onnx for the export. Tuning reads the MNIST fixture enlarged to 224 px, under
# --max-memory $MAXMEM (default 20G: its planner asks about 15 GiB for ViT-H/14 at batch 1);
# exporting ViT-H/14 peaks at about 8.4 GB (see docs/BENCHMARKS.md).
set -euo pipefail

[ $# -ge 1 ] || { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=$(mkdir -p "$1" && cd "$1" && pwd)
shift
MODELS=${*:-vit_l_16 vit_h_14}
PYTHON=${PYTHON:-/usr/bin/python3}
BIN=$DIR/bin
(cd "$ROOT" && go build -o "$BIN/" ./cmd/hyperat-import ./cmd/hyperat-tune ./cmd/hyperat-export)

# timed LABEL CMD...: runs CMD and prints its wall time and peak resident memory
timed() {
	local label=$1
	shift
	/usr/bin/time -v "$@" >"$DIR/$label.out" 2>"$DIR/$label.time" || { tail -5 "$DIR/$label.time"; exit 1; }
	awk -v l="$label" -F': ' '/Elapsed/ {t=$2} /Maximum resident/ {m=$2} END {printf "%-14s %10s wall  %7.0f MB peak\n", l, t, m*1024/1e6}' "$DIR/$label.time"
}

for name in $MODELS; do
	model=$DIR/${name}_op17.onnx
	[ -f "$model" ] || "$PYTHON" "$ROOT/bench/large_models.py" "$DIR" "$name"
	size=$(( $(stat -c %s "$model") + $( [ -f "$model.data" ] && stat -c %s "$model.data" || echo 0) ))
	echo "$name: $((size / 1000000)) MB of model and data"
	ws=$DIR/ws-$name
	rm -rf "$ws"
	timed "$name-import" "$BIN/hyperat-import" "$model" --workspace "$ws"
	[ "$name" = vit_h_14 ] || continue
	timed "$name-tune" "$BIN/hyperat-tune" --workspace "$ws" --data "$ROOT/fixtures/mnist" \
		--iters 1 --batch 1 --steps 1 --val 2 --val-steps 1 --eval-every 0 --max-memory "${MAXMEM:-20G}"
	rm -f "$DIR/$name-robust.onnx" "$DIR/$name-robust.onnx.data"
	timed "$name-export" "$BIN/hyperat-export" "$DIR/$name-robust.onnx" --workspace "$ws"
	ls -l "$DIR/$name-robust.onnx"*
done
