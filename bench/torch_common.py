"""What the PyTorch twins of the engine benchmarks share.

- threads(n): torch's intra-op threads (2 on the reference machine: all its cores);
- blas(): which BLAS torch really calls (from the process's memory map) and OpenBLAS's own report;
- matmul_gflops(): the 1024-cube float32 product, the check that torch runs on an optimized BLAS;
- mnist_vit(path): the fixture MNIST ViT (fixtures/gen/vit.py) with its weights read from the ONNX
  file, so that both sides run the same model;
- emit(...): one line "RESULT {json}", the format bench/cmd/engine-bench prints too;
- VITB_BATCH: the batch of the ViT-B/16 HyperAT and PGD measurements (engine-bench's vitbBatch);
- fraction(s): a number written as 0.03 or 8/255 (argparse type).

Debian's Python only: torch 1.13 (python3-torch), python3-onnx, numpy.
"""

import ctypes
import json
import os
import re
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GEN = os.path.join(ROOT, "fixtures", "gen")
DEFAULT_MODEL = os.path.join(ROOT, "fixtures", "models", "mnist_vit_op17.onnx")
DEFAULT_DATA = os.path.join(ROOT, "fixtures", "mnist")
START = time.perf_counter()
# the largest batch whose ViT-B/16 HyperAT training pass PyTorch holds on a 24 GiB machine
# (docs/BENCHMARKS.md, "ViT-B/16 against PyTorch"); engine-bench's vitbBatch is the same
VITB_BATCH = 128


def fraction(s):
    """0.03 or 8/255."""
    num, _, den = s.partition("/")
    return float(num) / float(den) if den else float(num)


def threads(n):
    n = int(n or os.environ.get("BENCH_THREADS", 0) or os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


def emit(**fields):
    fields["side"] = "torch"
    fields["threads"] = torch.get_num_threads()
    print("RESULT " + json.dumps(fields), flush=True)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def blas():
    """The BLAS libraries mapped into this process, and OpenBLAS's core and thread count."""
    torch.zeros(2, 2) @ torch.zeros(2, 2)  # make sure the BLAS is loaded
    libs = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 6 and re.search(r"blas|lapack|mkl", os.path.basename(parts[5]), re.I):
                if parts[5] not in libs:
                    libs.append(parts[5])
    info = {"libraries": libs, "openblas": None}
    for lib in libs:
        if "openblas" in os.path.basename(lib) and "libopenblas" in os.path.basename(lib):
            try:
                ob = ctypes.CDLL(lib)
                ob.openblas_get_corename.restype = ctypes.c_char_p
                ob.openblas_get_config.restype = ctypes.c_char_p
                info["openblas"] = {
                    "core": ob.openblas_get_corename().decode(),
                    "config": ob.openblas_get_config().decode(),
                    "threads": ob.openblas_get_num_threads(),
                }
            except (OSError, AttributeError):
                pass
            break
    return info


def matmul_gflops(n=1024, reps=20):
    """Best GFLOP/s of an n-cube float32 torch.matmul (out= preallocated)."""
    g = torch.Generator().manual_seed(0)
    a = torch.rand(n, n, generator=g)
    b = torch.rand(n, n, generator=g)
    c = torch.empty(n, n)
    for _ in range(3):
        torch.matmul(a, b, out=c)
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        torch.matmul(a, b, out=c)
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best / 1e9


def _gen_import(name):
    if GEN not in sys.path:
        sys.path.insert(0, GEN)
    return __import__(name)


def onnx_weights(path):
    """The state_dict of the timm-layout fixture ViT, read from its ONNX export.

    Named initializers keep their PyTorch names. The exporter stores a Linear that it turned into
    MatMul under a generated name (onnx::MatMul_N) and transposed ([in, out]); its PyTorch name
    comes from the MatMul node's scope (/blocks/blocks.0/attn/qkv/MatMul -> blocks.0.attn.qkv).
    """
    import onnx
    from onnx import numpy_helper

    m = onnx.load(path)
    inits = {i.name: i for i in m.graph.initializer}
    state = {}
    for name, t in inits.items():
        if not name.startswith("onnx::"):
            state[name] = torch.from_numpy(numpy_helper.to_array(t).copy())
    unnamed = []  # (node, initializer) of the MatMuls on generated names, in graph order
    for node in m.graph.node:
        if node.op_type != "MatMul" or len(node.input) != 2 or node.input[1] not in inits:
            continue
        w = node.input[1]
        if w.startswith("onnx::"):
            unnamed.append((node, w))
    for node, w in unnamed:
        scope = _scope_name(node.name)
        if scope is None:
            raise ValueError(f"{path}: cannot tell which layer MatMul {node.name!r} is")
        state[scope + ".weight"] = torch.from_numpy(numpy_helper.to_array(inits[w]).T.copy())
    return state


def _scope_name(node_name):
    """/blocks/blocks.0/attn/qkv/MatMul -> blocks.0.attn.qkv (each scope is either a child's
    attribute name or, for children of a container, the container's name with the index)."""
    parts = [p for p in node_name.split("/") if p][:-1]
    if not parts:
        return None
    name = ""
    for p in parts:
        if name and p.startswith(name + "."):
            name = p
        else:
            name = f"{name}.{p}" if name else p
    return name


def mnist_vit(path=DEFAULT_MODEL):
    """fixtures/gen/vit.py's mnist_vit() with the weights of the ONNX file at path, eval mode."""
    vit = _gen_import("vit")
    model = vit.mnist_vit()
    state = onnx_weights(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise ValueError(f"{path}: weights do not match fixtures/gen/vit.py's mnist_vit: "
                         f"missing {missing[:5]}, unexpected {extra[:5]}")
    for k, v in state.items():
        if tuple(own[k].shape) != tuple(v.shape):
            raise ValueError(f"{path}: {k} is {tuple(v.shape)}, the model wants {tuple(own[k].shape)}")
    model.load_state_dict(state)
    model.eval()
    return model


def check_golden(model):
    """Max |logits - golden| on the fixture's golden batch, or None without goldens."""
    d = os.path.join(ROOT, "fixtures", "golden", "mnist_vit")
    try:
        x = np.load(os.path.join(d, "input.npy"))
        want = np.load(os.path.join(d, "logits.npy"))
    except OSError:
        return None
    with torch.no_grad():
        got = model(torch.from_numpy(x.astype(np.float32))).double().numpy()
    return float(np.abs(got - want).max())


def mnist_test(folder=DEFAULT_DATA, limit=None):
    """The test images as float32 [N, 1, 28, 28] pixels in [0, 1] and int64 labels."""
    mnist = _gen_import("mnist")
    x, y = mnist.load(folder, "test")
    if limit:
        if limit > len(x):
            raise ValueError(f"{folder} has {len(x)} test images, fewer than {limit}")
        x, y = x[:limit], y[:limit]
    return torch.from_numpy(mnist.to_float(x)), torch.from_numpy(y.astype(np.int64))


def freeze(model):
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def timed(warm, iters, f):
    """Runs f warm times, then iters times; returns the seconds of each timed call."""
    for _ in range(warm):
        f()
    ts = []
    for _ in range(iters):
        t0 = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t0)
    return ts


def summary(ts):
    s = sorted(ts)
    n = len(s)
    med = s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2
    return s[0], med
