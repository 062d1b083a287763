"""Reads what bench/run.sh collected and prints the comparison tables (Markdown, readable as text).

usage: report.py RESULTS_DIR [--md FILE] [--peak-per-core 240]

RESULTS_DIR holds results.jsonl (the RESULT lines of every process, and one "proc" line per process
with its wall time and peak RSS from /usr/bin/time), go_sgemm.txt and go_micro.txt (the output of the
kernels package's benchmarks) and machine.json.

Ratios are ours versus PyTorch, higher is better for us: rates ours / PyTorch, times and memory
PyTorch / ours. "best" compares the best measurement of each side, "median" the medians; the
verdict (met / not met) uses the medians.
"""

import argparse
import json
import math
import os
import re
import statistics
import sys


def load(d):
    rows = []
    p = os.path.join(d, "results.jsonl")
    if os.path.exists(p):
        with open(p) as f:
            for line in f:
                line = line.strip()
                if line.startswith("RESULT "):
                    line = line[len("RESULT "):]
                if line.startswith("{"):
                    rows.append(json.loads(line))
    return rows


def go_bench(path, prefix):
    """{subname: {"gflops": [...], "q1": [...]}} from `go test -bench` output."""
    out = {}
    if not os.path.exists(path):
        return out
    pat = re.compile(r"^" + re.escape(prefix) + r"/(\S+?)(-\d+)?\s+\d+\s+[\d.]+ ns/op\s+([\d.]+) GFLOP/s\s+([\d.]+) q1-GFLOP/s")
    with open(path) as f:
        for line in f:
            m = pat.match(line.strip())
            if m:
                e = out.setdefault(m.group(1), {"gflops": [], "q1": []})
                e["gflops"].append(float(m.group(3)))
                e["q1"].append(float(m.group(4)))
    return out


def med(xs):
    return statistics.median(xs) if xs else None


def fmt(x, digits=None):
    if x is None:
        return "n/a"
    if digits is None:
        digits = 0 if abs(x) >= 100 else 1 if abs(x) >= 10 else 2 if abs(x) >= 1 else 3
    return f"{x:.{digits}f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def rx(x):
    return "n/a" if x is None else f"{x:.2f}x"


# The speed floors of the targets against PyTorch (docs/BENCHMARKS.md, "Status"): 3, 4 and 6 are
# those of the faster targets; 2, 7 and 8 the first ones.
FLOOR = {2: 1.5, 3: 3.0, 4: 3.0, 6: 2.0, 7: 1.5, 8: 1.5}


def verdict(x, floor):
    if x is None:
        return "not measured"
    return "met" if x >= floor else "not met"


class Report:
    def __init__(self, d, peak_per_core):
        self.d = d
        self.rows = load(d)
        for r in self.rows:
            if r.get("bench") == "hyperat" and r.get("side") == "go":
                r.setdefault("attack_precision", "fp32")  # records from before both were timed
            if r.get("bench") == "vitb" and r.get("side") == "go":
                r.setdefault("precision", "fp32")
        self.peak_per_core = peak_per_core
        mp = os.path.join(d, "machine.json")
        self.machine = json.load(open(mp)) if os.path.exists(mp) else {}
        self.lines = []
        self.targets = []  # (target, measure, ratio text, floor text, verdict)

    def pick(self, bench, side, **kw):
        return [r for r in self.rows if r.get("bench") == bench and r.get("side") == side
                and all(r.get(k) == v for k, v in kw.items())]

    def procs(self, label, side):
        return [r for r in self.rows if r.get("bench") == "proc" and r.get("label") == label
                and r.get("side") == side and r.get("rc", 0) == 0]

    def out(self, s=""):
        self.lines.append(s)

    # ---------------------------------------------------------------- sections

    def header(self):
        m = self.machine
        env = (self.pick("env", "torch") or [{}])[-1]
        self.out(f"## Machine")
        self.out()
        self.out(f"- date: {m.get('date', 'n/a')}")
        self.out(f"- CPU: {m.get('cpu', 'n/a')}, {m.get('cores', 'n/a')} cores "
                 f"({m.get('flags', '')})")
        self.out(f"- load average before the run: {m.get('load_before', 'n/a')}; after: {m.get('load_after', 'n/a')}")
        self.out(f"- Go: {m.get('go', 'n/a')}, GOMAXPROCS {m.get('gomaxprocs', 'n/a')}")
        ob = env.get("openblas") or {}
        libs = ", ".join(os.path.basename(l) for l in env.get("blas_libraries", [])) or "n/a"
        self.out(f"- PyTorch: {env.get('torch', 'n/a')}, {env.get('threads', 'n/a')} threads; BLAS: {libs}"
                 + (f" (OpenBLAS core {ob.get('core')}, {ob.get('threads')} threads)" if ob else ""))
        pol = (self.pick("omp_policy", "torch") or [None])[-1]
        if pol:
            how = ("set by TORCH_OMP_WAIT_POLICY" if pol.get("chosen") else
                   f"the faster on probes: {fmt(pol.get('default_s'))} s spinning (default), "
                   f"{fmt(pol.get('passive_s'))} s PASSIVE, two medians of a forward + input "
                   f"gradient summed")
            self.out(f"- PyTorch's OpenMP wait policy: {pol['policy']} ({how})")
        if env:
            self.out(f"- BLAS check, 1024-cube float32 torch.matmul: {fmt(env.get('gflops_1024'))} GFLOP/s "
                     f"({'above' if env.get('blas_ok') else 'below'} the {fmt(env.get('floor'))} GFLOP/s floor)")
            for p in env.get("problems", []):
                self.out(f"  - {p}")
        # the float32 ceiling run.sh measured and gave the BLAS check
        ceil = env.get("ceiling")
        self.ceiling = ceil
        if ceil:
            self.out(f"- measured FMA ceiling: the fastest SIMD micro-kernel on L1-resident panels, one core, "
                     f"first-quartile call: {fmt(ceil)} GFLOP/s per core")
        self.out()

    def matmul(self):
        go = go_bench(os.path.join(self.d, "go_sgemm.txt"), "BenchmarkSgemm")
        th = {r["shape"]: r for r in self.pick("matmul", "torch")}
        shapes = [s for s in go if s in th]
        if not shapes:
            self.targets.append(("1. matmul on ViT shapes >= 1.0x torch.matmul", "n/a", "n/a", ">= 1.0x", "not measured"))
            return
        self.out("## 1. Matrix multiply on ViT shapes (GFLOP/s, all cores)")
        self.out()
        self.out("NN: C = A B; NT: C = A B^T (input gradient); TN: C = A^T B (weight gradient); "
                 "BATCHxMxKxN: attention per head. Each side: the mean rate of a timed loop, per repetition; "
                 "best and median over the repetitions.")
        self.out()
        self.out("| shape | ours best | ours median | PyTorch best | PyTorch median | ratio best | ratio median |")
        self.out("|---|---|---|---|---|---|---|")
        rb, rm = {}, {}
        for s in shapes:
            g, t = go[s]["gflops"], th[s]["gflops"]
            rb[s] = ratio(max(g), max(t))
            rm[s] = ratio(med(g), med(t))
            self.out(f"| {s} | {fmt(max(g))} | {fmt(med(g))} | {fmt(max(t))} | {fmt(med(t))} | {rx(rb[s])} | {rx(rm[s])} |")
        self.out()
        geo_b = math.exp(statistics.mean(math.log(v) for v in rb.values()))
        geo_m = math.exp(statistics.mean(math.log(v) for v in rm.values()))
        worst = min(rm, key=rm.get)
        self.out(f"Geometric mean of the ratios: {rx(geo_b)} (best), {rx(geo_m)} (median); "
                 f"lowest median ratio {rx(rm[worst])} on {worst}; "
                 f"{sum(1 for v in rm.values() if v >= 1.0)} of {len(rm)} shapes at 1.0x or more.")
        self.out()
        self.targets.append(("1a. matmul on ViT shapes >= 1.0x torch.matmul",
                             f"{len(rm)} shapes, lowest {worst}", f"{rx(rm[worst])} lowest, {rx(geo_m)} geo-mean",
                             ">= 1.0x on every shape", verdict(rm[worst], 1.0)))
        large = [s for s in shapes if re.search(r"(^|_)(1576x|768x1576x|3072x1576x|1024x1024x1024)", s)]
        if large:
            cores = int(self.machine.get("cores") or 1)
            peak = self.peak_per_core * cores
            vals = [med(go[s]["gflops"]) for s in large]
            m = med(vals)
            lo = min(vals)
            self.out(f"Large shapes (ViT-B's M = 1576 products and the 1024 cube, {len(large)} shapes): "
                     f"median {fmt(m)} GFLOP/s, lowest {fmt(lo)}; "
                     f"{fmt(100 * m / peak)}% of the issue's peak figure ({fmt(self.peak_per_core)} GFLOP/s per core, "
                     f"{fmt(peak)} on {cores} cores)"
                     + (f", {fmt(100 * m / (self.ceiling * cores))}% of the measured ceiling "
                        f"({fmt(self.ceiling * cores)} GFLOP/s on {cores} cores)" if self.ceiling else "") + ".")
            self.out()
            self.targets.append(("1b. large shapes >= 70% of the fp32 FMA peak",
                                 f"median {fmt(m)} GFLOP/s",
                                 f"{fmt(100 * m / peak)}% of {fmt(peak)}"
                                 + (f"; {fmt(100 * m / (self.ceiling * cores))}% of measured {fmt(self.ceiling * cores)}"
                                    if self.ceiling else ""),
                                 ">= 70%", verdict(m / peak, 0.7)
                                 + (f" (measured ceiling: {verdict(m / (self.ceiling * cores), 0.7)})" if self.ceiling else "")))

    def precisions(self, bench, field):
        """The precisions our records of bench were timed at (their field), hyperat-tune's default
        (the records' tool_default) first, and that default."""
        precs = []
        for r in self.pick(bench, "go"):
            if r[field] not in precs:
                precs.append(r[field])
        default = next((r[field] for r in self.pick(bench, "go") if r.get("tool_default")),
                       precs[0] if precs else "fp32")
        precs.sort(key=lambda p: p != default)
        return precs, default

    def per_iter(self, bench, side, **kw):
        ts = [t for r in self.pick(bench, side, **kw) for t in r.get("seconds", [])]
        return ts

    def fwdgrad(self):
        self.out("## 2-8. The engine against PyTorch")
        self.out()
        self.out("| benchmark | unit | ours best | ours median | PyTorch best | PyTorch median | ratio best | ratio median | samples (ours / PyTorch) |")
        self.out("|---|---|---|---|---|---|---|---|---|")
        go, th = self.per_iter("fwdgrad", "go"), self.per_iter("fwdgrad", "torch")
        b = (self.pick("fwdgrad", "go") or self.pick("fwdgrad", "torch") or [{"batch": 64}])[0]["batch"]
        if go and th:
            gb, gm, tb, tm = b / min(go), b / med(go), b / min(th), b / med(th)
            self.out(f"| 2. forward + input gradient, MNIST ViT, batch {b} | samples/s | {fmt(gb)} | {fmt(gm)} | "
                     f"{fmt(tb)} | {fmt(tm)} | {rx(gb / tb)} | {rx(gm / tm)} | {len(go)} / {len(th)} |")
            self.targets.append((f"2. forward + input gradient >= {FLOOR[2]}x PyTorch", f"{fmt(gm)} vs {fmt(tm)} samples/s",
                                 rx(gm / tm), f">= {FLOOR[2]}x", verdict(gm / tm, FLOOR[2])))
        else:
            self.targets.append((f"2. forward + input gradient >= {FLOOR[2]}x PyTorch", "n/a", "n/a", f">= {FLOOR[2]}x", "not measured"))

    def pgd(self):
        go, th = self.procs("pgd", "go"), self.procs("pgd", "torch")
        gw, tw = [r["wall_s"] for r in go if r.get("wall_s")], [r["wall_s"] for r in th if r.get("wall_s")]
        gr, tr = self.pick("pgd", "go"), self.pick("pgd", "torch")
        n = (gr or tr or [{"n": "?"}])[0].get("n")
        if gw and tw:
            tool = (gr or [{}])[0].get("tool", "engine-bench pgd")
            self.out(f"| 3. PGD-10, first {n} MNIST test images, batch 64, whole process (ours: {tool}) | s | {fmt(min(gw))} | {fmt(med(gw))} | "
                     f"{fmt(min(tw))} | {fmt(med(tw))} | {rx(min(tw) / min(gw))} | {rx(med(tw) / med(gw))} | {len(gw)} / {len(tw)} |")
            ga = [r["attack_s"] for r in gr if "attack_s" in r]
            ta = [r["attack_s"] for r in tr if "attack_s" in r]
            if ga and ta:
                self.out(f"| 3'. the same, attack loop only (no start-up, import, data) | s | {fmt(min(ga))} | {fmt(med(ga))} | "
                         f"{fmt(min(ta))} | {fmt(med(ta))} | {rx(min(ta) / min(ga))} | {rx(med(ta) / med(ga))} | {len(ga)} / {len(ta)} |")
            self.targets.append((f"3. PGD-10 on {n} images, whole process >= {FLOOR[3]}x", f"{fmt(med(gw))} s vs {fmt(med(tw))} s",
                                 rx(med(tw) / med(gw)), f">= {FLOOR[3]}x", verdict(med(tw) / med(gw), FLOOR[3])))
            self.pgd_acc = (gr, tr)
        else:
            self.targets.append((f"3. PGD-10 whole process >= {FLOOR[3]}x", "n/a", "n/a", f">= {FLOOR[3]}x", "not measured"))
            self.pgd_acc = None

    def hyperat(self):
        """4. per defense and per precision of the attacks; the target is judged at hyperat-tune's
        default precision (the records' tool_default), the other shown beside it."""
        defs = []
        for r in self.pick("hyperat", "go") + self.pick("hyperat", "torch"):
            if r["defense"] not in defs:
                defs.append(r["defense"])
        precs, default = self.precisions("hyperat", "attack_precision")
        judged = None
        for p in precs:
            bests, meds = {"go": [], "torch": []}, {"go": [], "torch": []}
            label = f"attacks {p}" + (", hyperat-tune's default" if p == default and len(precs) > 1 else "")
            for d in defs:
                go = self.per_iter("hyperat", "go", defense=d, attack_precision=p)
                th = self.per_iter("hyperat", "torch", defense=d)
                if not (go and th):
                    continue
                bests["go"].append(min(go)); meds["go"].append(med(go))
                bests["torch"].append(min(th)); meds["torch"].append(med(th))
                self.out(f"| 4. HyperAT iteration, {d}, batch 64, {label} | s | {fmt(min(go))} | {fmt(med(go))} | {fmt(min(th))} | "
                         f"{fmt(med(th))} | {rx(min(th) / min(go))} | {rx(med(th) / med(go))} | {len(go)} / {len(th)} |")
            if meds["go"]:
                k = len(meds["go"])
                gb, gm = sum(bests["go"]) / k, sum(meds["go"]) / k
                tb, tm = sum(bests["torch"]) / k, sum(meds["torch"]) / k
                self.out(f"| 4. HyperAT iteration, mean of the {k} defenses, {label} | s | {fmt(gb)} | {fmt(gm)} | {fmt(tb)} | "
                         f"{fmt(tm)} | {rx(tb / gb)} | {rx(tm / gm)} | |")
                if judged is None:
                    judged = (k, p, gm, tm)
        if judged:
            k, p, gm, tm = judged
            self.targets.append((f"4. HyperAT iteration >= {FLOOR[4]}x (mean of {k} defenses, attacks {p})", f"{fmt(gm)} s vs {fmt(tm)} s",
                                 rx(tm / gm), f">= {FLOOR[4]}x", verdict(tm / gm, FLOOR[4])))
        else:
            self.targets.append((f"4. HyperAT iteration >= {FLOOR[4]}x", "n/a", "n/a", f">= {FLOOR[4]}x", "not measured"))

    def memory(self):
        for label, name in (("fwdgrad", "2. forward + input gradient"), ("hyperat", "4. HyperAT iterations")):
            go = [r["rss_kb"] / 1024 for r in self.procs(label, "go") if r.get("rss_kb")]
            th = [r["rss_kb"] / 1024 for r in self.procs(label, "torch") if r.get("rss_kb")]
            if go and th:
                self.out(f"| 5. peak RSS, process of {name} | MB | {fmt(min(go))} | {fmt(med(go))} | {fmt(min(th))} | "
                         f"{fmt(med(th))} | {rx(min(th) / min(go))} | {rx(med(th) / med(go))} | {len(go)} / {len(th)} |")
                self.targets.append((f"5. peak RSS of {name} <= PyTorch's", f"{fmt(med(go))} MB vs {fmt(med(th))} MB",
                                     rx(med(th) / med(go)), ">= 1.0x (no higher)", verdict(med(th) / med(go), 1.0)))
            else:
                self.targets.append((f"5. peak RSS of {name} <= PyTorch's", "n/a", "n/a", ">= 1.0x", "not measured"))

    def vitb(self):
        """6. per precision of our products (bf16 is hyperat-tune's attack default); the target is
        judged at the default, the other shown beside it."""
        th = self.per_iter("vitb", "torch")
        b = (self.pick("vitb", "go") or self.pick("vitb", "torch") or [{"batch": 8}])[0]["batch"]
        tr = [r["rss_kb"] / 1024 for r in self.procs("vitb", "torch") if r.get("rss_kb")]
        precs, default = self.precisions("vitb", "precision")
        shown = []  # (precision, median s, median MB or None)
        for p in precs:
            go = self.per_iter("vitb", "go", precision=p)
            label = f"products {p}" + (", hyperat-tune's attack default" if p == default and len(precs) > 1 else "")
            if go and th:
                self.out(f"| 6. ViT-B/16 224x224, forward + input gradient, batch {b}, {label} | s | {fmt(min(go))} | {fmt(med(go))} | "
                         f"{fmt(min(th))} | {fmt(med(th))} | {rx(min(th) / min(go))} | {rx(med(th) / med(go))} | {len(go)} / {len(th)} |")
            gr = [r["rss_kb"] / 1024 for r in self.procs("vitb" if p == "fp32" else f"vitb_{p}", "go") if r.get("rss_kb")]
            if gr and tr:
                self.out(f"| 6. ViT-B/16 peak RSS, batch {b}, {label} | MB | {fmt(min(gr))} | {fmt(med(gr))} | {fmt(min(tr))} | "
                         f"{fmt(med(tr))} | {rx(min(tr) / min(gr))} | {rx(med(tr) / med(gr))} | {len(gr)} / {len(tr)} |")
            if go and th:
                shown.append((p, med(go), med(gr) if gr and tr else None))
        if shown:
            p, g, mb = shown[0]
            what = f"{fmt(g)} s vs {fmt(med(th))} s" + (f", {fmt(mb)} MB vs {fmt(med(tr))} MB" if mb else "")
            what += "".join(f"; products {q}: {fmt(gq)} s, {rx(med(th) / gq)}" for q, gq, _ in shown[1:])
            self.targets.append((f"6. ViT-B/16 forward + input gradient at batch {b} >= {FLOOR[6]}x PyTorch (products {p})",
                                 what, rx(med(th) / g), f">= {FLOOR[6]}x", verdict(med(th) / g, FLOOR[6])))
        else:
            self.targets.append((f"6. ViT-B/16 forward + input gradient >= {FLOOR[6]}x PyTorch", "n/a", "n/a", f">= {FLOOR[6]}x", "not measured"))

    def vitb_train(self):
        """7. the ViT-B/16 HyperAT iteration per defense, 8. PGD on one ViT-B/16 batch; each with the
        processes' peak RSS. Absent unless bench/run.sh ran them (--vitb-train)."""
        for bench, num, what in (("vitb_hyperat", 7, "HyperAT iteration"), ("vitb_pgd", 8, "PGD")):
            gr, trr = self.pick(bench, "go"), self.pick(bench, "torch")
            if not (gr or trr):
                continue
            b = (gr or trr)[0].get("batch")
            steps = (gr or trr)[0].get("steps")
            micro = sorted({r.get("micro") or r.get("pass") for r in gr if r.get("micro") or r.get("pass")})
            ours = f"ours in {'micro-batches' if bench == 'vitb_hyperat' else 'passes'} of {', '.join(map(str, micro))}" if micro else "ours"
            name = f"{num}. ViT-B/16 224x224, {what}, {steps} attack step{'' if steps == 1 else 's'}, batch {b} ({ours})"
            keys = sorted({r.get("defense") for r in gr + trr}, key=str)
            ratios = []
            for d in keys:
                kw = {"defense": d} if d else {}
                go, th = self.per_iter(bench, "go", **kw), self.per_iter(bench, "torch", **kw)
                label = f"{name}{', ' + d if d else ''}"
                if go and th:
                    self.out(f"| {label} | s | {fmt(min(go))} | {fmt(med(go))} | {fmt(min(th))} | {fmt(med(th))} | "
                             f"{rx(min(th) / min(go))} | {rx(med(th) / med(go))} | {len(go)} / {len(th)} |")
                    ratios.append((d, med(go), med(th)))
            if ratios:
                gm = sum(r[1] for r in ratios) / len(ratios)
                tm = sum(r[2] for r in ratios) / len(ratios)
                self.targets.append((f"{num}. ViT-B/16 {what} at batch {b} >= {FLOOR[num]}x PyTorch"
                                     + (f" ({', '.join(str(r[0]) for r in ratios)})" if ratios[0][0] else ""),
                                     f"{fmt(gm)} s vs {fmt(tm)} s", rx(tm / gm), f">= {FLOOR[num]}x", verdict(tm / gm, FLOOR[num])))
            else:
                self.targets.append((f"{num}. ViT-B/16 {what} >= {FLOOR[num]}x PyTorch", "n/a", "n/a", f">= {FLOOR[num]}x", "not measured"))
            go = [r["rss_kb"] / 1024 for r in self.procs(bench, "go") if r.get("rss_kb")]
            th = [r["rss_kb"] / 1024 for r in self.procs(bench, "torch") if r.get("rss_kb")]
            if go and th:
                self.out(f"| {num}. ViT-B/16 {what} peak RSS, batch {b} | MB | {fmt(min(go))} | {fmt(med(go))} | {fmt(min(th))} | "
                         f"{fmt(med(th))} | {rx(min(th) / min(go))} | {rx(med(th) / med(go))} | {len(go)} / {len(th)} |")
                self.targets.append((f"{num}'. peak RSS of the ViT-B/16 {what} < PyTorch's", f"{fmt(med(go))} MB vs {fmt(med(th))} MB",
                                     rx(med(th) / med(go)), "> 1.0x (less)", "met" if med(th) > med(go) else "not met"))
            else:
                self.targets.append((f"{num}'. peak RSS of the ViT-B/16 {what} < PyTorch's", "n/a", "n/a", "> 1.0x", "not measured"))

    def notes(self):
        self.out()
        if getattr(self, "pgd_acc", None):
            gr, tr = self.pgd_acc
            g = gr[-1] if gr else {}
            t = tr[-1] if tr else {}
            self.out(f"PGD-10 accuracies (same model, same attack, different random starts): ours clean "
                     f"{fmt(g.get('clean'), 3)}, robust {fmt(g.get('robust'), 3)}; PyTorch clean {fmt(t.get('clean'), 3)}, "
                     f"robust {fmt(t.get('robust'), 3)}.")
        for bench, what in (("hyperat", "HyperAT run"), ("vitb_hyperat", "ViT-B/16 HyperAT run")):
            gp, tp = self.pick(bench, "go"), self.pick(bench, "torch")
            if gp and tp:
                self.out(f"Trained values per {what} (hypernetwork and head): ours {gp[0].get('params')}, "
                         f"PyTorch {tp[0].get('params')}"
                         + (f"; LoRA layers: ours {gp[0].get('lora_layers')}, PyTorch {tp[0].get('lora_layers')}"
                            if gp[0].get("lora_layers") else "") + ".")
        firsts = [((f"{r['bench']} {r['defense']}" if r.get("defense") else r["bench"])
                   + ("".join(f" {p}" for p in (r.get("precision"), r.get("attack_precision")) if p and p != "fp32")),
                   r.get("first_s"), r["side"]) for r in self.rows
                  if r.get("first_s") is not None and r.get("bench") in ("fwdgrad", "hyperat", "vitb", "vitb_hyperat", "vitb_pgd")]
        if firsts:
            by = {}
            for name, f, side in firsts:
                by.setdefault((name, side), []).append(f)
            parts = [f"{n} {s} {fmt(med(v))} s" for (n, s), v in sorted(by.items())]
            self.out("First (untimed) call, median: " + "; ".join(parts) + ". Ours compiles its programs there.")
        self.out()

    def target_table(self):
        self.out("## Targets")
        self.out()
        self.out("| target | measured (ours vs PyTorch, medians) | ratio | floor | verdict |")
        self.out("|---|---|---|---|---|")
        for t in self.targets:
            self.out("| " + " | ".join(t) + " |")
        self.out()

    def build(self):
        self.header()
        head = self.lines
        self.lines = []
        self.matmul()
        self.fwdgrad()
        self.pgd()
        self.hyperat()
        self.memory()
        self.vitb()
        self.vitb_train()
        self.notes()
        body = self.lines
        self.lines = []
        self.target_table()
        return "\n".join(head + self.lines + body)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dir")
    ap.add_argument("--md", help="also write the report to this file")
    ap.add_argument("--peak-per-core", type=float, default=float(os.environ.get("PEAK_GFLOPS_PER_CORE", 240)),
                    help="fp32 FMA peak per core in GFLOP/s for target 1b (default: the issue's 240)")
    args = ap.parse_args()
    text = Report(args.dir, args.peak_per_core).build()
    print(text)
    if args.md:
        with open(args.md, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
