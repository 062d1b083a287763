"""A short HyperAT training run of bench/torch_hyperat.py's PyTorch twin on real MNIST images, printing
the validation clean accuracy of each defense's LoRA as it goes: an independent check of how the
method behaves at short budgets on the fixture model (docs/RESULTS.md), not a benchmark.

usage: torch_hyperat_train.py [--iters 40] [--eps 0.1] [--lr 1e-3] [--clip 1.0] [--batch 64]
                              [--steps 10] [--every 5] [--val 256] [--seed 0]

The first --val training images of fixtures/mnist are held out for validation; the run draws
batches from the rest in a seeded order. Schedules as hyperat-tune's defaults: eps grows linearly
over the first 30% of the iterations, the learning rate follows the one-cycle schedule (10% warm-up).
"""

import argparse
import glob
import gzip
import os
import struct

import torch

import torch_common as tc
import torch_hyperat as th

DEFENSES = ["pgdat", "trades", "mart"]


def read_idx(path):
    with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
        data = f.read()
    nd = struct.unpack(">I", data[:4])[0] & 0xFF
    dims = struct.unpack(">" + "I" * nd, data[4:4 + 4 * nd])
    return torch.frombuffer(bytearray(data[4 + 4 * nd:]), dtype=torch.uint8).reshape(dims)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--clip", type=float, default=1.0, help="0 disables clipping")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--every", type=int, default=5)
    ap.add_argument("--val", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    tc.threads(args.threads)
    torch.manual_seed(args.seed)

    x = read_idx(glob.glob(os.path.join(tc.DEFAULT_DATA, "train-images*"))[0]).float()[:, None] / 255
    y = read_idx(glob.glob(os.path.join(tc.DEFAULT_DATA, "train-labels*"))[0]).long()
    xv, yv, xt, yt = x[:args.val], y[:args.val], x[args.val:], y[args.val:]

    model = tc.freeze(tc.mnist_vit())
    layers, targets = th.adapt(model, 8, 16.0)
    hyper = th.Hypernet(targets, 8, len(DEFENSES))
    for p in model.head.parameters():
        p.requires_grad_(True)
    params = list(hyper.parameters()) + list(model.head.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(args.seed)
    order = torch.randperm(xt.shape[0], generator=g)

    def clean_accuracy(m):
        A, B = hyper(m)
        th.set_merged(layers, [a.detach() for a in A], [b.detach() for b in B])
        with torch.no_grad():
            return (model(xv).argmax(1) == yv).float().mean().item()

    warm = max(1, round(0.3 * args.iters))
    for it in range(args.iters):
        m = int(torch.randint(len(DEFENSES), (1,), generator=g))
        eps = args.eps * min(1.0, (it + 1) / warm)
        start = (it * args.batch) % (xt.shape[0] - args.batch)
        idx = order[start:start + args.batch]
        xb, yb = xt[idx], yt[idx]
        A, B = hyper(m)
        th.set_merged(layers, [a.detach() for a in A], [b.detach() for b in B])
        adv = th.attack(DEFENSES[m], model, xb, yb, eps, args.steps, g)
        th.set_lora(layers, A, B)
        loss = th.loss_of(DEFENSES[m], model, xb, adv, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(params, args.clip if args.clip > 0 else float("inf"))
        for group in opt.param_groups:
            group["lr"] = th.one_cycle(args.lr, it, args.iters)
        opt.step()
        if (it + 1) % args.every == 0 or it == args.iters - 1:
            accs = " ".join(f"{d} {100 * clean_accuracy(k):.1f}%" for k, d in enumerate(DEFENSES))
            print(f"iter {it + 1}: {DEFENSES[m]} loss {loss.item():.3f} eps {eps:.3f} grad norm {norm:.2f}; "
                  f"validation clean: {accs}", flush=True)


if __name__ == "__main__":
    main()
