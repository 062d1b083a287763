"""The PyTorch side's setup, checked: torch version, the BLAS it really calls, and whether that BLAS
is fast (a 1024-cube float32 matmul above 250 GFLOP/s on 2 threads on the reference machine; the
reference BLAS, which torch falls back to without OpenBLAS, runs at about 6 GFLOP/s).

usage: torch_env.py [--threads N] [--floor 250]

Prints what it found on stderr and one RESULT line; exits 0 either way (bench/run.sh reports it).
"""

import argparse
import os
import subprocess

import torch

import torch_common as tc


def alternative():
    """Where Debian's libblas.so.3 alternative points (the BLAS torch links to)."""
    for name in ("libblas.so.3-x86_64-linux-gnu", "libblas.so.3"):
        try:
            out = subprocess.run(["update-alternatives", "--query", name], capture_output=True, text=True)
        except OSError:
            return None
        for line in out.stdout.splitlines():
            if line.startswith("Value:"):
                return line.split(":", 1)[1].strip()
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--floor", type=float, default=250.0, help="GFLOP/s the 1024-cube product must exceed")
    ap.add_argument("--ceiling", type=float, default=0.0,
                    help="the machine's measured fp32 FMA ceiling per core (GFLOP/s), to explain a miss")
    args = ap.parse_args()
    n = tc.threads(args.threads)
    info = tc.blas()
    gf = max(tc.matmul_gflops() for _ in range(3))
    load = os.getloadavg()[0]
    problems = []
    libs = info["libraries"]
    if not any("openblas" in l for l in libs):
        problems.append("torch does not call OpenBLAS (loaded: %s): apt-get install libopenblas0-pthread, "
                        "then check update-alternatives --display libblas.so.3-x86_64-linux-gnu"
                        % (", ".join(libs) or "no BLAS library"))
    elif any("/blas/" in l for l in libs):
        problems.append("the reference BLAS is loaded: update-alternatives --set libblas.so.3-x86_64-linux-gnu "
                        "/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3")
    ob = info["openblas"]
    if ob and ob["threads"] < n:
        problems.append(f"OpenBLAS runs {ob['threads']} threads, torch {n}: unset OPENBLAS_NUM_THREADS/OMP_NUM_THREADS")
    if gf < args.floor:
        if load > 0.5 * (os.cpu_count() or 1):
            problems.append(f"the machine is busy (load average {load:.1f} on {os.cpu_count()} cores): "
                            "other processes share the cores, every figure of this run is low")
        if args.ceiling > 0 and args.floor > args.ceiling * n:
            problems.append(f"the floor is above what this CPU can do: its measured FMA ceiling is "
                            f"{args.ceiling:.0f} GFLOP/s per core, {args.ceiling * n:.0f} on {n} threads; "
                            f"OpenBLAS reaches {100 * gf / (args.ceiling * n):.0f}% of that")
        if not problems:
            problems.append("no cause found (OpenBLAS, idle machine): the CPU is slower than the reference machine")
    ok = gf >= args.floor
    tc.log(f"torch {torch.__version__}, {n} threads; BLAS: {', '.join(os.path.basename(l) for l in libs)}"
           + (f" (OpenBLAS core {ob['core']}, {ob['threads']} threads)" if ob else ""))
    tc.log(f"1024-cube float32 matmul: {gf:.0f} GFLOP/s on {n} threads "
           f"({'above' if ok else 'BELOW'} the {args.floor:.0f} GFLOP/s floor)")
    for p in problems:
        tc.log("  " + p)
    tc.emit(bench="env", torch=torch.__version__, blas_libraries=libs, openblas=ob,
            alternative=alternative(), gflops_1024=gf, floor=args.floor, blas_ok=ok, problems=problems,
            load=load, ceiling=args.ceiling or None)


if __name__ == "__main__":
    main()
