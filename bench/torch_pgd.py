"""PyTorch twin of the PGD benchmark: clean accuracy and PGD-K accuracy on the first N MNIST test
images, run as a whole process (bench/run.sh times it with /usr/bin/time, start-up included).
With --vitb, the twin of engine-bench vitb-pgd instead: K PGD steps on one batch of random
images on torchvision's vit_b_16 at 224x224, every image attacked, timed per attack.

usage: torch_pgd.py [--model fixtures/models/mnist_vit_op17.onnx] [--data fixtures/mnist]
                    [--limit 640] [--batch 64] [--eps 0.1] [--steps 10] [--only-correct]
       torch_pgd.py --vitb [--batch 128] [--eps 8/255] [--steps 10] [--warm 1] [--iters 1]

The attack is the project's PGD: a uniform random start in the eps ball, K signed-gradient steps of
2.5 eps / K on the cross-entropy, each followed by the projection onto the ball and [0, 1]; the
final iterate is the example. Model in eval mode, weights frozen, gradients with respect to the
input only. By default every image is attacked (as hyperat.Evaluate does); with --only-correct only
the images the model gets right are attacked, and the others count as fooled (as the attack
package and hyperat-eval --attacks do).

--vitb: bench/vitb_e2e_inputs.py's model (torchvision's vit_b_16, 10 classes, the weights of the
file that script exports), random images in [0, 1), labels 0..9 in turn; each attack is the K
steps above on the whole batch (each a forward and an input gradient), without the clean and
final forwards, as the Go side's training attacks run (attack.PGD.Perturb).
"""

import argparse
import time

import torch
import torch.nn.functional as F

import torch_common as tc


def pgd(model, x, y, eps, steps, g):
    alpha = 2.5 * eps / steps
    lo, hi = (x - eps).clamp(min=0), (x + eps).clamp(max=1)
    adv = x + (torch.rand(x.shape, generator=g) * 2 - 1) * eps
    adv = torch.max(torch.min(adv, hi), lo)
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(model(adv), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, adv)
        with torch.no_grad():
            adv = adv + alpha * grad.sign()
            adv = torch.max(torch.min(adv, hi), lo)
    return adv.detach()


def vitb_batch(args):
    import vitb_e2e_inputs

    t0 = time.perf_counter()
    model = tc.freeze(vitb_e2e_inputs.build())
    load = time.perf_counter() - t0
    batch = args.batch or tc.VITB_BATCH
    eps = 8 / 255 if args.eps is None else args.eps
    g = torch.Generator().manual_seed(args.seed)
    x = torch.rand((batch, 3, 224, 224), generator=g)
    y = torch.arange(batch) % 10
    t0 = time.perf_counter()
    pgd(model, x, y, eps, args.steps, g)
    first = time.perf_counter() - t0
    # --warm 0: the first attack is one of the timed ones (at the full batch one attack is half an hour)
    ts = [first] if args.warm == 0 else []
    ts += tc.timed(max(args.warm - 1, 0), args.iters - len(ts), lambda: pgd(model, x, y, eps, args.steps, g))
    best, med = tc.summary(ts)
    tc.log(f"torch vitb-pgd: batch {batch}, {args.steps} steps, best {best:.3f}s, median {med:.3f}s per attack")
    tc.emit(bench="vitb_pgd", batch=batch, steps=args.steps, eps=eps, seconds=ts, load_s=load,
            first_s=first if args.warm else None)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=tc.DEFAULT_MODEL)
    ap.add_argument("--vitb", action="store_true", help="K steps on one batch of ViT-B/16 at 224x224")
    ap.add_argument("--data", default=tc.DEFAULT_DATA)
    ap.add_argument("--limit", type=int, default=640)
    ap.add_argument("--batch", type=int, default=None, help=f"default 64; with --vitb {tc.VITB_BATCH}")
    ap.add_argument("--eps", type=tc.fraction, default=None, help="default 0.1; with --vitb 8/255")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--only-correct", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--warm", type=int, default=1, help="--vitb: untimed attacks first (0: the first is timed)")
    ap.add_argument("--iters", type=int, default=1, help="--vitb: timed attacks")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    tc.threads(args.threads)
    if args.vitb:
        return vitb_batch(args)
    args.batch = args.batch or 64
    args.eps = 0.1 if args.eps is None else args.eps
    model = tc.freeze(tc.mnist_vit(args.model))
    x_all, y_all = tc.mnist_test(args.data, args.limit)
    g = torch.Generator().manual_seed(args.seed)
    clean = robust = 0
    t0 = time.perf_counter()
    for lo in range(0, len(x_all), args.batch):
        x, y = x_all[lo:lo + args.batch], y_all[lo:lo + args.batch]
        with torch.no_grad():
            right = model(x).argmax(1) == y
        clean += int(right.sum())
        if args.only_correct:
            x, y = x[right], y[right]
            if len(y) == 0:
                continue
        adv = pgd(model, x, y, args.eps, args.steps, g)
        with torch.no_grad():
            robust += int((model(adv).argmax(1) == y).sum())
    attack = time.perf_counter() - t0
    n = len(y_all)
    total = time.perf_counter() - tc.START
    tc.log(f"torch pgd-{args.steps}: {n} images, clean {clean / n:.3f}, robust {robust / n:.3f}, "
           f"{attack:.2f}s attacking, {total:.2f}s since the script started")
    tc.emit(bench="pgd", n=n, steps=args.steps, clean=clean / n, robust=robust / n, attack_s=attack,
            process_s=total, only_correct=args.only_correct)


if __name__ == "__main__":
    main()
