"""Compares BenchmarkSgemm with torch.matmul shape by shape.

Usage: python3 compare_torch.py KERNELS_TEST_BINARY [threads] [rounds]

Build the binary with `go test -c -o kernels.test ./kernels`. For each shape
the two are run alternately, rounds times, and the best first-quartile rate
of each is kept, so that both see the same background load. Prints a
Markdown table of GFLOP/s. On a machine shared with other work, run it under
`chrt -f 50` so that the measured processes keep their cores.
"""
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def go_rate(binary, threads, shape):
    # GOMAXPROCS rather than -test.cpu, which does not reach sub-benchmarks.
    env = dict(os.environ, GOMAXPROCS=str(threads))
    out = subprocess.run(
        [binary, "-test.run", "^$", "-test.bench", f"^BenchmarkSgemm$/^{shape}$",
         "-test.benchtime", "20x"],
        capture_output=True, text=True, check=True, env=env).stdout
    m = re.search(r"([\d.]+) q1-GFLOP/s", out)
    return float(m.group(1))


def torch_rate(threads, shape):
    out = subprocess.run(
        ["/usr/bin/python3", os.path.join(HERE, "torch_sgemm.py"), str(threads), shape],
        capture_output=True, text=True, check=True).stdout
    return float(out.split()[2])


def main():
    binary = sys.argv[1]
    threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    sys.path.insert(0, HERE)
    sys.argv[1:] = [str(threads)]  # read by torch_sgemm on import
    import torch_sgemm
    print(f"| shape (MxKxN) | hyperat | torch | ratio |")
    print(f"|---|---:|---:|---:|")
    for tr, batch, m, k, n in torch_sgemm.shapes():
        shape = f"{tr}_{batch}x{m}x{k}x{n}" if batch else f"{tr}_{m}x{k}x{n}"
        ours = theirs = 0.0
        for _ in range(rounds):
            ours = max(ours, go_rate(binary, threads, shape))
            theirs = max(theirs, torch_rate(threads, shape))
        print(f"| {shape} | {ours:.1f} | {theirs:.1f} | {ours / theirs:.2f} |", flush=True)


if __name__ == "__main__":
    main()
