#!/usr/bin/env bash
# ViT-B/16 end to end (docs/BENCHMARKS.md, "ViT-B/16 end to end"): hyperat-import,
# hyperat-tune --batch 64, hyperat-export and hyperat-eval (clean, PGD-20 and the AutoAttack
# suite on a few test images) of torchvision's vit_b_16 (ARCH=vit_l_16: its ViT-L/16, with a
# smaller BATCH) on a 224-px image folder, each under a memory budget (--max-memory) and timed
# by /usr/bin/time -v (wall and CPU time, peak resident memory). The model and the images are
# made once by bench/vitb_e2e_inputs.py into DIR, never into the repository.
#
# usage: bash bench/vitb_e2e.sh DIR
#
# Settings by environment: ARCH (vit_b_16), BATCH (64), MAXMEM (12G), ITERS (2), STEPS (5),
# EVAL_LIMIT (20: the whole test folder; with random weights the model answers one class for
# every image, so fewer images in file order may hold no correct one, and the attacks, which
# start from the correctly classified images, would then have nothing to do). Needs
# /usr/bin/time (Debian's `time`), Go, and Debian's python3-torch, python3-torchvision,
# python3-onnx and python3-pil.
set -euo pipefail

[ $# -ge 1 ] || { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=$(mkdir -p "$1" && cd "$1" && pwd)
PYTHON=${PYTHON:-/usr/bin/python3}
ARCH=${ARCH:-vit_b_16}
BATCH=${BATCH:-64}
MAXMEM=${MAXMEM:-12G}
ITERS=${ITERS:-2}
STEPS=${STEPS:-5}
EVAL_LIMIT=${EVAL_LIMIT:-20}
BIN=$DIR/bin
(cd "$ROOT" && go build -o "$BIN/" ./cmd/hyperat-import ./cmd/hyperat-tune ./cmd/hyperat-export ./cmd/hyperat-eval)
"$PYTHON" "$ROOT/bench/vitb_e2e_inputs.py" "$DIR" --arch "$ARCH"

# timed LABEL CMD...: runs CMD (its output in DIR/LABEL.out, GNU time's in DIR/LABEL.time) and
# prints its wall and CPU time and peak resident memory; a failing CMD prints its last lines
# (the tuning of a model with random weights stays at chance: hyperat-tune reports that and
# exits 1 with its result written, which the export then takes with --force)
timed() {
	local label=$1 rc=0
	shift
	echo "\$ ${*#$DIR/}" | sed "s|$DIR/||g; s|$ROOT/||g"
	/usr/bin/time -v "$@" >"$DIR/$label.out" 2>"$DIR/$label.time" || rc=$?
	[ $rc = 0 ] || { echo "exit status $rc:"; grep -v '^\s' "$DIR/$label.time" | tail -3; }
	awk -v l="$label" -F': ' '/Elapsed/ {t=$2} /User time/ {u=$2} /System time/ {s=$2} /Maximum resident/ {m=$2}
		END {printf "%-8s %10s wall  %8.0f s CPU  %7.0f MB peak RSS\n", l, t, u+s, m*1024/1e6}' "$DIR/$label.time"
}

model=$DIR/${ARCH}_op17.onnx
ws=$DIR/ws
rm -rf "$ws" "$DIR/robust.onnx"
uptime
timed import "$BIN/hyperat-import" "$model" --workspace "$ws"
timed tune "$BIN/hyperat-tune" --workspace "$ws" --data "$DIR/images" --batch "$BATCH" --iters "$ITERS" \
	--steps "$STEPS" --val 16 --val-steps 2 --eval-every 0 --max-memory "$MAXMEM"
uptime
timed export "$BIN/hyperat-export" "$DIR/robust.onnx" --workspace "$ws" --force
timed eval "$BIN/hyperat-eval" "$DIR/robust.onnx" --data "$DIR/images" --eps 8/255 \
	--attacks clean,pgd-20 --suite autoattack --limit "$EVAL_LIMIT" --max-memory "$MAXMEM"
uptime
