"""The inputs of bench/vitb_e2e.sh: torchvision's ViT-B/16 (or with --arch vit_l_16 its ViT-L/16;
10 classes, seeded random weights, opset 17, dynamic batch) and a 224-px image folder made from the
MNIST fixture.

usage: vitb_e2e_inputs.py OUT_DIR [--arch vit_b_16] [--opset 17] [--train-per-class 10] [--test-per-class 2]
                          [--no-images]

Writes OUT_DIR/<arch>_op<N>.onnx and OUT_DIR/images/{train,test}/<digit>/*.png (a scratch
folder, never the repository); --no-images writes the model alone (the ViT-B/16 measurements of
bench/run.sh --vitb-train). torchvision zero-initializes the classifier head, which makes
every logit constant whatever the image (a degenerate model: every gradient of the loss with
respect to the input is zero); the head here gets small random weights instead (normal, std
0.02, seeded), so that the attacks and the tuning have gradients to follow.

Debian's Python: torch 1.13 (python3-torch), torchvision 0.14, onnx 1.12, PIL.
"""

import argparse
import os
import sys
import time

import torch
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fullsize  # noqa: E402  (image_folder)

SIZE = 224


ARCHS = ("vit_b_16", "vit_l_16")


def build(arch="vit_b_16"):
    torch.manual_seed(0)
    model = getattr(torchvision.models, arch)(weights=None, num_classes=10).float().eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        head = model.heads.head
        head.weight.copy_(torch.randn(head.weight.shape, generator=g) * 0.02)
        head.bias.zero_()
    return model


def export(path, opset, arch="vit_b_16"):
    model = build(arch)
    # nn.MultiheadAttention takes its fused inference path (no ONNX form) in eval mode unless
    # grad is enabled and a weight requires grad: trace the plain path, still in eval mode.
    for p in model.parameters():
        p.requires_grad_(True)
    dummy = torch.rand(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    t0 = time.perf_counter()
    tmp = path + ".tmp"
    with torch.enable_grad():
        torch.onnx.export(model, (dummy,), tmp, export_params=True, opset_version=opset,
                          do_constant_folding=True, input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                          training=torch.onnx.TrainingMode.EVAL)
    os.replace(tmp, path)
    params = sum(p.numel() for p in model.parameters())
    print(f"{path}: {params:,} parameters, {os.path.getsize(path):,} bytes, "
          f"{time.perf_counter() - t0:.0f}s", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--arch", choices=ARCHS, default=ARCHS[0])
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--train-per-class", type=int, default=10)
    ap.add_argument("--test-per-class", type=int, default=2)
    ap.add_argument("--no-images", action="store_true", help="the model alone")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", 2)))
    os.makedirs(args.out, exist_ok=True)
    model = os.path.join(args.out, f"{args.arch}_op{args.opset}.onnx")
    if not os.path.exists(model):
        export(model, args.opset, args.arch)
    images = os.path.join(args.out, "images")
    if not args.no_images and not os.path.isdir(images):
        fullsize.image_folder(images + ".tmp", args.train_per_class, args.test_per_class)
        os.replace(images + ".tmp", images)
        print(f"{images}: {args.train_per_class} training and {args.test_per_class} test images per digit")


if __name__ == "__main__":
    main()
