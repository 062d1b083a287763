"""torch.matmul on the shapes of kernels.BenchmarkSgemm (kernels/sgemm_bench_test.go), named the same
way: NN/NT/TN (which operand is stored transposed) then MxKxN, or BATCHxMxKxN for the batched
attention products. The output is preallocated (out=), as the Go kernel writes into a given C:
torch's best case.

usage: torch_matmul.py [--filter REGEX] [--reps 3] [--min-time 0.3] [--threads N]

Per shape and repetition: the mean GFLOP/s over calls for at least --min-time seconds, and the
GFLOP/s of the first quartile of the call times (as the Go benchmark's q1-GFLOP/s).
"""

import argparse
import re
import time

import torch

import torch_common as tc

LINEAR = [
    (3200, 128, 384), (3200, 384, 128), (3200, 128, 512), (3200, 512, 128),
    (12800, 128, 384), (12800, 384, 128), (12800, 128, 512), (12800, 512, 128),
    (1576, 768, 2304), (1576, 768, 3072), (1576, 3072, 768), (1576, 768, 768),
    (1024, 1024, 1024),
]
ATTENTION = [(256, 50, 32), (96, 197, 64)]


def shapes():
    """(name, transA, transB, m, k, n, batch), in the order of the Go benchmark."""
    out = []
    for m, k, n in LINEAR:
        out.append((False, False, m, k, n, 0))  # Y = X W
        out.append((False, True, m, n, k, 0))  # dX = dY W^T
        out.append((True, False, k, m, n, 0))  # dW = X^T dY
    for b, t, d in ATTENTION:
        out.append((False, True, t, d, t, b))  # Q K^T
        out.append((False, False, t, t, d, b))  # P V
        out.append((True, False, t, t, d, b))  # P^T dO
    named = []
    for ta, tb, m, k, n, b in out:
        t = "TN" if ta and not tb else "NT" if tb and not ta else "TT" if ta else "NN"
        name = f"{t}_{b}x{m}x{k}x{n}" if b else f"{t}_{m}x{k}x{n}"
        named.append((name, ta, tb, m, k, n, b))
    return named


def operands(ta, tb, m, k, n, b, g):
    lead = (b,) if b else ()
    # stored as the Go benchmark stores them: op(A) = A^T when transA, A is then K x M
    a = torch.rand(lead + ((k, m) if ta else (m, k)), generator=g) * 2 - 1
    bm = torch.rand(lead + ((n, k) if tb else (k, n)), generator=g) * 2 - 1
    a = a.transpose(-1, -2) if ta else a
    bm = bm.transpose(-1, -2) if tb else bm
    c = torch.empty(lead + (m, n))
    return a, bm, c


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--filter", default="", help="only shapes whose name matches this regular expression")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=0.3)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    tc.threads(args.threads)
    g = torch.Generator().manual_seed(1)
    pat = re.compile(args.filter) if args.filter else None
    for name, ta, tb, m, k, n, b in shapes():
        if pat and not pat.search(name):
            continue
        flops = 2.0 * max(b, 1) * m * n * k
        a, bm, c = operands(ta, tb, m, k, n, b, g)
        torch.matmul(a, bm, out=c)
        means, q1s = [], []
        for _ in range(args.reps):
            ts = []
            t_start = time.perf_counter()
            while True:
                t0 = time.perf_counter()
                torch.matmul(a, bm, out=c)
                t1 = time.perf_counter()
                ts.append(t1 - t0)
                if t1 - t_start >= args.min_time and len(ts) >= 3:
                    break
            means.append(flops * len(ts) / sum(ts) / 1e9)
            q1s.append(flops / sorted(ts)[len(ts) // 4] / 1e9)
        tc.log(f"torch matmul {name}: {max(means):.1f} GFLOP/s best of {args.reps}")
        tc.emit(bench="matmul", shape=name, gflops=means, q1_gflops=q1s)


if __name__ == "__main__":
    main()
