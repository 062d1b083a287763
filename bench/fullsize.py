"""Every step of the toolchain on torchvision's full-size swin_t, swin_s and maxvit_t.

usage: /usr/bin/python3 bench/fullsize.py [--out DIR] [--models swin_t swin_s maxvit_t] [--opsets 14 17]
                                          [--iters 2] [--batch 2] [--steps 2] [--eval-images 4]

For each model (224 px, 10 classes, random weights seeded as fixtures/gen/export_full.py seeds
them) exported with dynamic batch at each opset into DIR (a scratch folder, default a temporary
one, removed at the end unless --out is given; the files are about 100 MB each), it runs:

  import   hyperat-import: the blocks and the LoRA targets it lists
  forward  the engine's logits (hyperat-eval --input) against onnxruntime's, batch 1 and 5: max |diff| <= 1e-4
  grad     the engine's input gradient of the mean cross-entropy (hyperat-eval --grad-input) against
           PyTorch's (float64), batch 2: max |diff| / max |PyTorch| <= 1e-3
  tune     hyperat-tune (HyperAT, three defenses) for --iters iterations of --batch images, PGD-K
           with K = --steps, on a 224-px image folder made from the MNIST subset; with random
           weights validation accuracy sits at chance, so the tool reports a collapse (exit 1): the
           step passes when the result is written
  export   hyperat-export --force (the collapse above), then the exported model's engine logits
           against onnxruntime's, batch 5: max |diff| <= 1e-4
  eval     hyperat-eval on the exported model: clean and PGD-K accuracy on --eval-images test images

It prints one row per step: passed, the largest difference, seconds and the peak resident memory
of the step's processes (GNU time's %M; PyTorch's part of the grad step excluded). Debian's Python
(torch 1.13, torchvision 0.14, onnx, numpy, PIL), /usr/bin/time, Node with fixtures/ort's
onnxruntime, and Go.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GEN = os.path.join(ROOT, "fixtures", "gen")
sys.path.insert(0, GEN)
import export  # noqa: E402
import mnist  # noqa: E402
import swin  # noqa: E402

TOOLS = ["hyperat-import", "hyperat-tune", "hyperat-export", "hyperat-eval"]


def sh(cmd):
    """Runs cmd under GNU time; returns (exit status, seconds, peak resident MiB, output). (The
    rusage of a child forked from this process would count this process's own memory.)"""
    with tempfile.NamedTemporaryFile("r") as f:
        t0 = time.time()
        p = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", f.name] + cmd, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        secs = time.time() - t0
        kib = [ln for ln in f.read().split("\n") if ln.strip().isdigit()]
    return p.returncode, secs, int(kib[-1]) / 1024 if kib else 0.0, p.stdout


class Step:
    """One row of the table, accumulating the commands it ran."""

    def __init__(self, rows, model, opset, name):
        self.row = dict(model=model, opset=opset, step=name, ok=True, diff="", secs=0.0, mib=0.0, note="")
        rows.append(self.row)

    def run(self, cmd):
        rc, secs, mib, out = sh(cmd)
        self.row["secs"] += secs
        self.row["mib"] = max(self.row["mib"], mib)
        return rc, out

    def check(self, ok, diff=None, note=None):
        self.row["ok"] = self.row["ok"] and bool(ok)
        if diff is not None:
            self.row["diff"] = f"{diff:.2g}"
        if note:
            self.row["note"] = (self.row["note"] + "; " if self.row["note"] else "") + note
        return ok


def last_line(out):
    lines = [ln for ln in out.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def image_folder(path, train, test):
    """A 224-px RGB image folder (train/, test/, a subfolder per digit) from the MNIST subset."""
    x, y = mnist.load(os.path.join(ROOT, "fixtures", "mnist"), "train")
    xt, yt = mnist.load(os.path.join(ROOT, "fixtures", "mnist"), "test")
    for split, xs, ys, per in (("train", x, y, train), ("test", xt, yt, test)):
        for c in range(10):
            d = os.path.join(path, split, str(c))
            os.makedirs(d, exist_ok=True)
            for k, i in enumerate(np.flatnonzero(ys == c)[:per]):
                img = Image.fromarray(xs[i]).resize((224, 224), Image.BILINEAR).convert("RGB")
                img.save(os.path.join(d, f"{k}.png"))


def engine_logits(step, bin_dir, model, x, work):
    xp, yp = os.path.join(work, "x.npy"), os.path.join(work, "engine.npy")
    np.save(xp, x)
    rc, out = step.run([os.path.join(bin_dir, "hyperat-eval"), model, "--input", xp, "--logits", yp,
                        "--batch", str(len(x))])
    if rc != 0:
        step.check(False, note=last_line(out))
        return None
    return np.load(yp)


def ort_logits(step, model, x, work):
    xp, yp = os.path.join(work, "x.npy"), os.path.join(work, "ort.npy")
    np.save(xp, x)
    rc, out = step.run(["node", os.path.join(ROOT, "fixtures", "ort", "run.mjs"), model, xp, yp])
    if rc != 0:
        step.check(False, note="onnxruntime: " + last_line(out))
        return None
    return np.load(yp)


def agree(step, bin_dir, model, batches, work, seed):
    """The engine's logits against onnxruntime's at each batch size, within 1e-4."""
    worst = 0.0
    for b in batches:
        x = torch.rand((b, 3, 224, 224), generator=torch.Generator().manual_seed(seed + b)).numpy()
        ours, ref = engine_logits(step, bin_dir, model, x, work), ort_logits(step, model, x, work)
        if ours is None or ref is None:
            return
        if ours.shape != ref.shape:
            step.check(False, note=f"logits {ours.shape}, onnxruntime {ref.shape}")
            return
        worst = max(worst, float(np.abs(ours - ref).max()))
    step.check(worst <= 1e-4, worst)


def torch_grad(model, x, labels):
    """PyTorch's input gradient of the mean cross-entropy, in float64."""
    m = model.double()
    xd = torch.from_numpy(x).double().requires_grad_(True)
    F.cross_entropy(m(xd), torch.from_numpy(labels)).backward()
    model.float()
    return xd.grad.numpy()


def grad_step(step, bin_dir, path, x, labels, want, work):
    xp, lp, gp = (os.path.join(work, n) for n in ("gx.npy", "gl.npy", "g.npy"))
    np.save(xp, x)
    np.save(lp, labels)
    rc, out = step.run([os.path.join(bin_dir, "hyperat-eval"), path, "--input", xp, "--labels", lp,
                        "--grad-input", gp, "--batch", str(len(x))])
    if rc != 0:
        step.check(False, note=last_line(out))
        return
    got = np.load(gp)
    rel = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-30))
    step.check(rel <= 1e-3, rel, "relative")


def pipeline(rows, args, bin_dir, data, name, opset, path, grad_in, work):
    """import, forward, grad, tune, export, eval on one exported model."""
    ws = os.path.join(work, f"ws_{name}_{opset}")
    s = Step(rows, name, opset, "import")
    rc, out = s.run([os.path.join(bin_dir, "hyperat-import"), path, "--workspace", ws])
    targets = [ln for ln in out.splitlines() if ln.startswith("linear layers to tune")]
    blocks = [ln for ln in out.splitlines() if ln.startswith("blocks (")]
    if not s.check(rc == 0 and targets, note=(blocks[0].split()[1].strip("()") + " blocks, " +
                                              targets[0].split("(")[1].split(")")[0] + " targets")
                   if rc == 0 and targets and blocks else last_line(out)):
        return
    s = Step(rows, name, opset, "forward")
    agree(s, bin_dir, path, [1, 5], work, seed=10)
    s = Step(rows, name, opset, "grad")
    grad_step(s, bin_dir, path, *grad_in, work)
    s = Step(rows, name, opset, "tune")
    rc, out = s.run([os.path.join(bin_dir, "hyperat-tune"), "--workspace", ws, "--data", data,
                     "--iters", str(args.iters), "--batch", str(args.batch), "--steps", str(args.steps),
                     "--val", "4", "--val-steps", "1", "--eval-every", "0", "--seed", "1"])
    written = "\nresult    " in out
    s.check(written, note="collapsed (random weights)" if rc != 0 and "collapsed" in out else
            (last_line(out) if not written else None))
    if not written:
        return
    s = Step(rows, name, opset, "export")
    robust = os.path.join(work, f"robust_{name}_{opset}.onnx")
    rc, out = s.run([os.path.join(bin_dir, "hyperat-export"), robust, "--workspace", ws, "--force"])
    if not s.check(rc == 0, note=None if rc == 0 else last_line(out)):
        return
    agree(s, bin_dir, robust, [5], work, seed=20)
    s = Step(rows, name, opset, "eval")
    rc, out = s.run([os.path.join(bin_dir, "hyperat-eval"), robust, "--data", data, "--eps", "8/255",
                     "--attacks", f"clean,pgd-{args.steps}", "--limit", str(args.eval_images),
                     "--batch", "2", "--seed", "1"])
    acc = [ln.strip() for ln in out.splitlines() if "%" in ln and ("clean" in ln or "pgd" in ln)]
    s.check(rc == 0, note=", ".join(" ".join(a.split()) for a in acc) if rc == 0 else last_line(out))
    os.remove(robust)


def table(rows):
    head = "| model | opset | step | passed | max diff | seconds | peak MiB | notes |"
    lines = [head, "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['opset']} | {r['step']} | {'yes' if r['ok'] else 'NO'} | {r['diff']} | "
                     f"{r['secs']:.1f} | {r['mib']:.0f} | {r['note']} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None, help="scratch folder, kept (default: a temporary one, removed)")
    ap.add_argument("--models", nargs="+", default=list(swin.FULL))
    ap.add_argument("--opsets", nargs="+", type=int, default=[14, 17])
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--eval-images", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(2)
    work = args.out or tempfile.mkdtemp(prefix="hyperat-fullsize-")
    os.makedirs(work, exist_ok=True)
    try:
        bin_dir = os.path.join(work, "bin")
        subprocess.run(["go", "build", "-o", bin_dir + "/"] + [f"./cmd/{t}" for t in TOOLS], cwd=ROOT, check=True)
        data = os.path.join(work, "images224")
        image_folder(data, train=4, test=1)
        rows = []
        t0 = time.time()
        for name in args.models:
            size, ctor = swin.FULL[name]
            torch.manual_seed(0)  # export_full.py's seed
            model = ctor(num_classes=10).float().eval()
            x = torch.rand((2, 3, size, size), generator=torch.Generator().manual_seed(30)).numpy()
            labels = np.array([3, 7], dtype=np.int64)
            grad_in = (x, labels, torch_grad(model, x, labels))
            for opset in args.opsets:
                path = os.path.join(work, f"{name}_op{opset}.onnx")
                export.export(model, (3, size, size), path, opset)
                pipeline(rows, args, bin_dir, data, name, opset, path, grad_in, work)
                os.remove(path)
                print(table(rows[-6:]).split("\n", 2)[2], flush=True)
        print(f"\nsettings: tune --iters {args.iters} --batch {args.batch} --steps {args.steps} "
              f"--val 4 --val-steps 1; eval --limit {args.eval_images} --attacks clean,pgd-{args.steps} "
              f"--eps 8/255; {time.time() - t0:.0f} s in all\n")
        print(table(rows))
        return 0 if all(r["ok"] for r in rows) else 1
    finally:
        if not args.out:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
