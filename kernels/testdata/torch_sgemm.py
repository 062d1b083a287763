"""Times torch.matmul on the shapes of BenchmarkSgemm, for comparison.

Usage: python3 torch_sgemm.py [threads] [shape]

Prints one line per shape: the name BenchmarkSgemm uses, the mean GFLOP/s and
the GFLOP/s of the first quartile of the call times (BenchmarkSgemm's
q1-GFLOP/s: the machine's cores may be shared, and other load only ever slows
a call down).
"""
import os
import sys
import time

# OpenBLAS keeps its own thread pool, which torch.set_num_threads does not
# reach: size it before the library loads.
THREADS = int(sys.argv[1]) if len(sys.argv) > 1 else 2
os.environ["OPENBLAS_NUM_THREADS"] = str(THREADS)

import torch  # noqa: E402


def shapes():
    linear = [(3200, 128, 384), (3200, 384, 128), (3200, 128, 512), (3200, 512, 128),
              (12800, 128, 384), (12800, 384, 128), (12800, 128, 512), (12800, 512, 128),
              (1576, 768, 2304), (1576, 768, 3072), (1576, 3072, 768), (1576, 768, 768),
              (1024, 1024, 1024)]
    for m, k, n in linear:
        yield ("NN", 0, m, k, n)
        yield ("NT", 0, m, n, k)  # dX = dY W^T
        yield ("TN", 0, k, m, n)  # dW = X^T dY
    for batch, t, d in [(256, 50, 32), (96, 197, 64)]:
        yield ("NT", batch, t, d, t)  # Q K^T, dP = dO V^T
        yield ("NN", batch, t, t, d)  # P V, dQ = dS K
        yield ("TN", batch, t, t, d)  # dV = P^T dO, dK = dS^T Q


def operands(tr, batch, m, k, n):
    lead = (batch,) if batch else ()
    # Stored as Sgemm sees them: a transposed operand is a transposed view.
    a = torch.randn(*lead, k, m).transpose(-1, -2) if tr[0] == "T" else torch.randn(*lead, m, k)
    b = torch.randn(*lead, n, k).transpose(-1, -2) if tr[1] == "T" else torch.randn(*lead, k, n)
    return a, b


def main():
    filt = sys.argv[2] if len(sys.argv) > 2 else ""
    torch.set_num_threads(THREADS)
    for tr, batch, m, k, n in shapes():
        name = f"{tr}_{batch}x{m}x{k}x{n}" if batch else f"{tr}_{m}x{k}x{n}"
        if filt and filt != name:
            continue
        a, b = operands(tr, batch, m, k, n)
        out = torch.empty(*((batch,) if batch else ()), m, n)
        flops = 2.0 * max(batch, 1) * m * n * k
        torch.matmul(a, b, out=out)
        reps = max(8, min(200, int(3e10 / flops)))
        times = []
        for _ in range(reps):
            t = time.perf_counter()
            torch.matmul(a, b, out=out)
            times.append(time.perf_counter() - t)
        mean = sum(times) / reps
        q1 = sorted(times)[reps // 4]
        print(f"{name}\t{flops / mean / 1e9:.1f}\t{flops / q1 / 1e9:.1f}", flush=True)


if __name__ == "__main__":
    main()
