"""PyTorch twin of engine-bench fwdgrad and vitb: forward plus the input gradient of the mean
cross-entropy (one PGD step), model in eval mode with frozen weights, random images in [0, 1).

usage: torch_fwdgrad.py [--model fixtures/models/mnist_vit_op17.onnx] [--batch 64] [--warm 1] [--iters 10]
       torch_fwdgrad.py --vitb [--batch 8] [--warm 1] [--iters 3]

The MNIST ViT is fixtures/gen/vit.py's mnist_vit with the ONNX file's weights (the model the Go side
imports). --vitb builds torchvision's vit_b_16 with the seeded random weights bench/torch_vitb.py
exports.
"""

import argparse
import time

import torch
import torch.nn.functional as F

import torch_common as tc


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=tc.DEFAULT_MODEL)
    ap.add_argument("--vitb", action="store_true", help="torchvision vit_b_16 at 224x224 instead")
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--warm", type=int, default=1)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    tc.threads(args.threads)
    t0 = time.perf_counter()
    if args.vitb:
        import torch_vitb
        model, shape, classes, name = torch_vitb.build(), (3, 224, 224), 1000, "vitb"
        batch = args.batch or 8
    else:
        model, shape, classes, name = tc.mnist_vit(args.model), (1, 28, 28), 10, "fwdgrad"
        batch = args.batch or 64
    tc.freeze(model)
    load = time.perf_counter() - t0
    g = torch.Generator().manual_seed(1)
    x = torch.rand((batch,) + shape, generator=g)
    y = torch.arange(batch) % classes

    def step():
        xr = x.clone().requires_grad_(True)
        loss = F.cross_entropy(model(xr), y)
        (gx,) = torch.autograd.grad(loss, xr)
        return gx

    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    ts = tc.timed(max(args.warm - 1, 0), args.iters, step)
    best, med = tc.summary(ts)
    tc.log(f"torch {name}: batch {batch}, best {best:.3f}s, median {med:.3f}s per forward+input gradient")
    tc.emit(bench=name, batch=batch, seconds=ts, load_s=load, first_s=first)


if __name__ == "__main__":
    main()
