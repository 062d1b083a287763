"""Exports torchvision's ViT-L/16 and ViT-H/14 (random seeded weights, 10 classes) for the
large-file benchmarks (bench/large.sh, docs/BENCHMARKS.md "Large files").

usage: large_models.py OUT_DIR [vit_l_16] [vit_h_14] [--opset 17]

Writes OUT_DIR/<name>_op<N>.onnx: TorchScript exporter, dynamic batch ("input", "logits"),
constant folding, eval mode, 224x224 (torchvision's image size for these builders without
pretrained weights). vit_l_16 is one 1.2 GB file. vit_h_14 (632M parameters, 2.5 GB) is beyond
protobuf's 2 GB, so torch writes its tensors as external data, one file per tensor; the script
then gathers them into one data file beside the model (<name>_op<N>.onnx.data, every tensor of
1 KiB or more) with the onnx package and removes the per-tensor files. Never written into the
repository: give a scratch folder.

Debian's Python: torch 1.13 (python3-torch), torchvision 0.14, onnx 1.12.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

import torch
import torchvision

SIZE = 224


def build(name):
    torch.manual_seed(0)
    return getattr(torchvision.models, name)(weights=None, num_classes=10).float().eval()


def export(name, out_dir, opset):
    model = build(name)
    # nn.MultiheadAttention takes its fused inference path (no ONNX form) in eval mode unless
    # grad is enabled and a weight requires grad: trace the plain path, still in eval mode.
    for p in model.parameters():
        p.requires_grad_(True)
    params = sum(p.numel() for p in model.parameters())
    dummy = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    path = os.path.join(out_dir, f"{name}_op{opset}.onnx")
    # torch writes a model beyond 2 GB as a folder of per-tensor files: export into a
    # temporary folder, then move or gather the result
    tmp = tempfile.mkdtemp(dir=out_dir, prefix=f".{name}.")
    try:
        t0 = time.perf_counter()
        with torch.enable_grad():
            torch.onnx.export(model, (dummy,), os.path.join(tmp, "model.onnx"), export_params=True,
                              opset_version=opset, do_constant_folding=True,
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                              training=torch.onnx.TrainingMode.EVAL)
        del model
        files = os.listdir(tmp)
        if files == ["model.onnx"]:
            os.replace(os.path.join(tmp, "model.onnx"), path)
        else:
            gather(os.path.join(tmp, "model.onnx"), path)
        print(f"{path}: {params:,} parameters, {os.path.getsize(path):,} bytes"
              f"{data_note(path)}, {time.perf_counter() - t0:.0f}s", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def gather(src, dst):
    """Rewrites a model whose tensors are in many files as dst plus one data file, dst.data."""
    import onnx

    m = onnx.load(src)  # reads the external data in
    data = os.path.basename(dst) + ".data"
    if os.path.exists(dst + ".data"):
        os.remove(dst + ".data")
    onnx.save_model(m, dst, save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data, size_threshold=1024)
    onnx.checker.check_model(dst)  # by path: the checker reads a model beyond 2 GB only so


def data_note(path):
    d = path + ".data"
    return f" + {os.path.getsize(d):,} bytes of external data ({os.path.basename(d)})" if os.path.exists(d) else ""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("models", nargs="*", default=["vit_l_16", "vit_h_14"])
    ap.add_argument("--opset", type=int, default=17)
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", 2)))
    os.makedirs(args.out, exist_ok=True)
    for name in args.models:
        if name not in ("vit_l_16", "vit_h_14"):
            sys.exit(f"large_models.py: unknown model {name} (vit_l_16, vit_h_14)")
        export(name, args.out, args.opset)


if __name__ == "__main__":
    main()
