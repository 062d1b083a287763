"""PyTorch twin of engine-bench hyperat: one HyperAT training iteration (docs/METHOD.md), timed per
defense, batch 64, on the fixture MNIST ViT with random images; with --vitb, the twin of
engine-bench vitb-hyperat: the same iteration on torchvision's vit_b_16 at 224x224.

usage: torch_hyperat.py [--model fixtures/models/mnist_vit_op17.onnx] [--defenses pgdat,trades,mart]
                        [--batch 64] [--eps 0.1] [--steps 10] [--warm 1] [--iters 3]
       torch_hyperat.py --vitb [--defenses pgdat] [--batch 128] [--eps 8/255] [--steps 10] [--warm 1] [--iters 1]

The iteration, as the Go trainer runs it (hyperat.Trainer.Step):
  1. the hypernetwork generates every adapted layer's LoRA factors for the defense: embeddings of the
     defense, the block and the layer kind (32 each) -> MLP 96-128-128 with ReLU -> per layer kind a
     head for A (rank x in) and one for B (out x rank, zero at the start); rank 8, alpha 16;
     LoRA on qkv, proj, fc1 and fc2 of every block: y = W0 x + b + (alpha / r) B A x;
  2. the defense's attack against the adapted model: 10 PGD steps of 2.5 eps / 10 with the factors
     held fixed and merged into the weights (W0 + scale B A: the attack needs no gradient of the
     factors), gradients with respect to the input only (PGD-AT and MART: cross-entropy from a
     uniform start; TRADES: KL(p(x) || p(x')) from x + 0.001 N(0, I));
  3. the defense's loss (PGD-AT: CE(f(x'), y); TRADES: CE(f(x), y) + 6 KL; MART: boosted CE on x'
     + 6 KL (1 - p_y(x))), back-propagated into the hypernetwork (through the generated factors)
     and the classifier head; gradient-norm clipping at 1; one AdamW step (no weight decay) at the
     one-cycle learning rate.
The pretrained weights are frozen (requires_grad False), the model is in eval mode. Each defense
gets a fresh model and hypernetwork, as the Go benchmark builds a trainer per defense.

--vitb: the model of bench/vitb_e2e_inputs.py (torchvision's vit_b_16, 10 classes, the same seeded
weights as the ONNX file that script exports, which the Go side imports). torchvision's attention is
nn.MultiheadAttention, whose packed input projection is no module: each block's attention is
replaced by SplitAttention, the same arithmetic (packed qkv projection, q scaled by 1/sqrt(d),
softmax(q k^T) v per head, output projection) with qkv and proj as Linear layers, so that the LoRA
wraps the same four layers the Go side adapts (qkv 768x2304, proj, fc1 = mlp[0], fc2 = mlp[3]).
The script checks that the replaced model's logits equal the original's on one image. The whole
batch runs at once (no micro-batches: PyTorch holds it; see docs/BENCHMARKS.md for the batch).
"""

import argparse
import gc
import math
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

import torch_common as tc

KINDS = {"qkv": ("attn", "qkv"), "proj": ("attn", "proj"), "fc1": ("mlp", "fc1"), "fc2": ("mlp", "fc2")}
# torchvision's ViT, after SplitAttention: kind -> (child of the block, attribute or index)
TV_KINDS = {"qkv": ("self_attention", "qkv"), "proj": ("self_attention", "proj"), "fc1": ("mlp", 0), "fc2": ("mlp", 3)}


class LoRALinear(nn.Module):
    """A frozen nn.Linear plus scale * B A x, with A and B set from outside before each run."""

    def __init__(self, base, scale):
        super().__init__()
        self.base = base
        self.scale = scale
        self.A = None
        self.B = None
        self.W = None

    def forward(self, x):
        if self.W is not None:
            return F.linear(x, self.W, self.base.bias)
        y = self.base(x)
        if self.A is not None:
            y = y + self.scale * F.linear(F.linear(x, self.A), self.B)
        return y


class Hypernet(nn.Module):
    def __init__(self, targets, rank, defenses, embed=32, hidden=128):
        super().__init__()
        self.kinds = sorted({t["kind"] for t in targets})
        blocks = max(t["block"] for t in targets) + 1
        self.n = len(targets)
        self.rank = rank
        self.E = nn.Parameter(torch.randn(defenses, embed))
        self.L = nn.Parameter(torch.randn(blocks, embed))
        self.T = nn.Parameter(torch.randn(len(self.kinds), embed))
        self.mlp = nn.Sequential(nn.Linear(3 * embed, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU())
        self.register_buffer("block_idx", torch.tensor([t["block"] for t in targets]))
        self.register_buffer("kind_idx", torch.tensor([self.kinds.index(t["kind"]) for t in targets]))
        self.rows = {k: [i for i, t in enumerate(targets) if t["kind"] == k] for k in self.kinds}
        self.dims = {t["kind"]: (t["in"], t["out"]) for t in targets}
        self.head_A = nn.ModuleDict({k: nn.Linear(hidden, rank * self.dims[k][0]) for k in self.kinds})
        self.head_B = nn.ModuleDict({k: nn.Linear(hidden, self.dims[k][1] * rank) for k in self.kinds})
        for h in self.head_B.values():
            nn.init.zeros_(h.weight)
            nn.init.zeros_(h.bias)

    def forward(self, m):
        x = torch.cat([self.E[m].expand(self.n, -1), self.L[self.block_idx], self.T[self.kind_idx]], dim=1)
        z = self.mlp(x)
        A, B = [None] * self.n, [None] * self.n
        for k in self.kinds:
            rows = self.rows[k]
            zk = z[rows]
            fin, fout = self.dims[k]
            a = self.head_A[k](zk).view(len(rows), self.rank, fin)
            b = self.head_B[k](zk).view(len(rows), fout, self.rank)
            for j, i in enumerate(rows):
                A[i], B[i] = a[j], b[j]
        return A, B


class SplitAttention(nn.Module):
    """nn.MultiheadAttention (batch first, self-attention, no mask, eval) with its packed input
    projection as a Linear layer (qkv) and its output projection as proj: the arithmetic of
    torch's unfused path, so that both can carry a LoRA."""

    def __init__(self, mha):
        super().__init__()
        if not mha.batch_first or not mha._qkv_same_embed_dim or mha.in_proj_bias is None:
            raise ValueError("SplitAttention wants a batch-first self-attention with a packed, biased projection")
        e = mha.embed_dim
        self.heads = mha.num_heads
        self.qkv = nn.Linear(e, 3 * e)
        self.qkv.weight, self.qkv.bias = mha.in_proj_weight, mha.in_proj_bias
        self.proj = mha.out_proj

    def forward(self, query, key, value, need_weights=False):
        n, l, e = query.shape
        d = e // self.heads
        q, k, v = self.qkv(query).view(n, l, 3, self.heads, d).permute(2, 0, 3, 1, 4)
        a = torch.softmax((q * d ** -0.5) @ k.transpose(-2, -1), dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(n, l, e)), None


def adapt(model, rank, alpha):
    """Wraps qkv, proj, fc1 and fc2 of every block; returns the wrappers and their descriptions."""
    if hasattr(model, "encoder"):  # torchvision's VisionTransformer
        blocks, kinds = model.encoder.layers, TV_KINDS
        for block in blocks:
            block.self_attention = SplitAttention(block.self_attention)
    else:
        blocks, kinds = model.blocks, KINDS
    layers, targets = [], []
    for bi, block in enumerate(blocks):
        for kind, (parent, attr) in kinds.items():
            owner = getattr(block, parent)
            base = owner[attr] if isinstance(attr, int) else getattr(owner, attr)
            w = LoRALinear(base, alpha / rank)
            if isinstance(attr, int):
                owner[attr] = w
            else:
                setattr(owner, attr, w)
            layers.append(w)
            targets.append({"kind": kind, "block": bi, "in": base.in_features, "out": base.out_features})
    return layers, targets


def set_lora(layers, A, B):
    for l, a, b in zip(layers, A, B):
        l.A, l.B, l.W = a, b, None


def set_merged(layers, A, B):
    """The attack needs no gradient of the factors: each layer runs its merged weight
    W0 + scale B A, as the Go side's attack programs do."""
    with torch.no_grad():
        for l, a, b in zip(layers, A, B):
            l.A, l.B = None, None
            l.W = torch.addmm(l.base.weight, b, a, alpha=l.scale)


def project(adv, x, eps):
    return torch.max(torch.min(adv, (x + eps).clamp(max=1)), (x - eps).clamp(min=0))


def pgd(model, x, start, eps, steps, loss_fn):
    alpha = 2.5 * eps / steps
    adv = project(start, x, eps)
    for _ in range(steps):
        adv.requires_grad_(True)
        (g,) = torch.autograd.grad(loss_fn(model(adv)), adv)
        with torch.no_grad():
            adv = project(adv + alpha * g.sign(), x, eps)
    return adv.detach()


def kl_batchmean(zp, zq):
    """mean_i KL(softmax(zp_i) || softmax(zq_i))."""
    return F.kl_div(F.log_softmax(zq, dim=1), F.log_softmax(zp, dim=1), reduction="batchmean", log_target=True)


def attack(defense, model, x, y, eps, steps, g):
    if defense == "trades":
        with torch.no_grad():
            zc = model(x)
        start = x + 0.001 * torch.randn(x.shape, generator=g)
        return pgd(model, x, start, eps, steps,
                   lambda z: F.kl_div(F.log_softmax(z, 1), F.log_softmax(zc, 1), reduction="sum", log_target=True))
    start = x + (torch.rand(x.shape, generator=g) * 2 - 1) * eps
    return pgd(model, x, start, eps, steps, lambda z: F.cross_entropy(z, y, reduction="sum"))


def loss_of(defense, model, x, adv, y, beta=6.0):
    za = model(adv)
    if defense == "pgdat":
        return F.cross_entropy(za, y)
    zc = model(x)
    if defense == "trades":
        return F.cross_entropy(zc, y) + beta * kl_batchmean(zc, za)
    # MART
    pa = F.softmax(za, dim=1)
    others = pa.masked_fill(F.one_hot(y, pa.shape[1]).bool(), -1.0)
    bce = F.cross_entropy(za, y, reduction="none") - torch.log(1.0001 - others.max(dim=1).values)
    pc = F.softmax(zc, dim=1)
    kl = (pc * (F.log_softmax(zc, dim=1) - F.log_softmax(za, dim=1))).sum(dim=1)
    py = pc.gather(1, y[:, None]).squeeze(1)
    return (bce + beta * kl * (1 - py)).mean()


def one_cycle(lr, it, total, warm=0.1):
    w = round(warm * total)
    if it < w:
        return lr * (it + 1) / w
    return lr * 0.5 * (1 + math.cos(math.pi * (it - w) / max(total - w, 1)))


def vitb():
    """bench/vitb_e2e_inputs.py's ViT-B/16 (the weights of the file it exports)."""
    import vitb_e2e_inputs

    return vitb_e2e_inputs.build()


class Run:
    def __init__(self, path, defense, batch, eps, steps=10, rank=8, alpha=16.0, lr=1e-3, total=1000, vitb_model=False):
        if vitb_model:
            self.model, self.shape = tc.freeze(vitb()), (3, 224, 224)
            x = torch.rand((1,) + self.shape, generator=torch.Generator().manual_seed(2))
            with torch.no_grad():
                want = self.model(x)
        else:
            self.model, self.shape = tc.freeze(tc.mnist_vit(path)), (1, 28, 28)
        self.layers, targets = adapt(self.model, rank, alpha)
        if vitb_model:
            with torch.no_grad():
                diff = float((self.model(x) - want).abs().max())
            if not diff <= 1e-4 * max(1.0, float(want.abs().max())):
                raise SystemExit(f"the adapted ViT-B/16 computes other logits than torchvision's (largest difference {diff:.3g})")
            tc.log(f"torch: torchvision's attention replaced by SplitAttention, logits within {diff:.2g} of the original's")
        self.kinds = {t["kind"]: f"{t['in']}x{t['out']}" for t in targets}
        self.hyper = Hypernet(targets, rank, 1)
        head = self.model.heads.head if vitb_model else self.model.head
        for p in head.parameters():
            p.requires_grad_(True)
        self.params = list(self.hyper.parameters()) + list(head.parameters())
        self.opt = torch.optim.AdamW(self.params, lr=lr, weight_decay=0.0)
        self.defense, self.batch, self.eps, self.steps = defense, batch, eps, steps
        self.lr, self.total, self.it = lr, total, 0
        self.g = torch.Generator().manual_seed(0)

    def trained(self):
        return sum(p.numel() for p in self.params)

    def step(self):
        x = torch.rand((self.batch,) + self.shape, generator=self.g)
        y = torch.arange(self.batch) % 10
        A, B = self.hyper(0)
        set_merged(self.layers, [a.detach() for a in A], [b.detach() for b in B])
        adv = attack(self.defense, self.model, x, y, self.eps, self.steps, self.g)
        set_lora(self.layers, A, B)
        loss = loss_of(self.defense, self.model, x, adv, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        for group in self.opt.param_groups:
            group["lr"] = one_cycle(self.lr, self.it, self.total)
        self.opt.step()
        self.it += 1
        return float(loss)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=tc.DEFAULT_MODEL)
    ap.add_argument("--vitb", action="store_true", help="torchvision's vit_b_16 at 224x224 (bench/vitb_e2e_inputs.py's)")
    ap.add_argument("--defenses", default=None, help="default pgdat,trades,mart; with --vitb pgdat")
    ap.add_argument("--batch", type=int, default=None, help=f"default 64; with --vitb {tc.VITB_BATCH}")
    ap.add_argument("--eps", type=tc.fraction, default=None, help="default 0.1; with --vitb 8/255")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warm", type=int, default=1)
    ap.add_argument("--iters", type=int, default=None, help="default 3; with --vitb 1")
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    tc.threads(args.threads)
    name = "vitb_hyperat" if args.vitb else "hyperat"
    defenses = args.defenses or ("pgdat" if args.vitb else "pgdat,trades,mart")
    batch = args.batch or (tc.VITB_BATCH if args.vitb else 64)
    eps = args.eps if args.eps is not None else (8 / 255 if args.vitb else 0.1)
    iters = args.iters or (1 if args.vitb else 3)
    for d in defenses.split(","):
        if d not in ("pgdat", "trades", "mart"):
            raise SystemExit(f"unknown defense {d!r}: want pgdat, trades or mart")
        run = Run(args.model, d, batch, eps, steps=args.steps, vitb_model=args.vitb)
        t0 = time.perf_counter()
        run.step()
        first = time.perf_counter() - t0
        ts = tc.timed(max(args.warm - 1, 0), iters, run.step)
        best, med = tc.summary(ts)
        tc.log(f"torch {name} {d}: LoRA rank 8 on {len(run.layers)} layers {run.kinds}; batch {batch}, "
               f"best {best:.3f}s, median {med:.3f}s per iteration ({run.trained()} trained values)")
        tc.emit(bench=name, defense=d, batch=batch, seconds=ts, first_s=first, params=run.trained(),
                steps=args.steps, eps=eps, lora_layers=len(run.layers))
        del run
        gc.collect()  # one run's memory at a time, as the Go side


if __name__ == "__main__":
    main()
