"""ViT-B/16 at 224x224 for the large-model benchmark: torchvision's vit_b_16 with seeded random
weights (no download), eval mode.

usage: torch_vitb.py export OUT.onnx [--opset 14]

Exports it with a dynamic batch axis (input "input", output "logits") for the Go side
(HYPERAT_VITB=OUT.onnx, engine-bench vitb). The file is about 330 MB: bench/run.sh writes it to a
temporary folder, never into the repository. torch_fwdgrad.py --vitb times the same model in
PyTorch (build() below, same seed, same weights).
"""

import argparse
import os
import time

import torch

import torch_common as tc


def build():
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.vit_b_16(weights=None)
    return model.eval()


def export(path, opset):
    model = build()
    # nn.MultiheadAttention may take its fused inference path (aten::_native_multi_head_attention,
    # which has no ONNX form) in eval mode unless grad is enabled and a weight requires grad:
    # trace with grad enabled so that the plain, exportable path is recorded.
    for p in model.parameters():
        p.requires_grad_(True)
    dummy = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    tmp = path + ".tmp"
    with torch.enable_grad():
        torch.onnx.export(model, (dummy,), tmp, export_params=True, opset_version=opset,
                          do_constant_folding=True, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          training=torch.onnx.TrainingMode.EVAL)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("out")
    e.add_argument("--opset", type=int, default=14)
    e.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    tc.threads(args.threads)
    t0 = time.perf_counter()
    export(args.out, args.opset)
    tc.log(f"exported torchvision vit_b_16 (random weights, opset {args.opset}) to {args.out}: "
           f"{os.path.getsize(args.out) / 1e6:.0f} MB in {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
