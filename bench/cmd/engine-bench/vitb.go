package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/hyperat/hyperat/attack"
	"github.com/hyperat/hyperat/bench"
	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/hyperat"
	"github.com/hyperat/hyperat/internal/sysmem"
	"github.com/hyperat/hyperat/loss"
	"github.com/hyperat/hyperat/model"
)

// vitbBatch is the batch of the ViT-B/16 workloads: the largest whose
// HyperAT training pass PyTorch holds on a 24 GiB machine (docs/BENCHMARKS.md,
// "ViT-B/16 against PyTorch"), which bench/run.sh gives both sides.
const vitbBatch = 128

// planMicro sets the trainer's micro-batch from a memory budget (0: none,
// the configuration's stays) as hyperat-tune --max-memory does: the fewest
// micro-batches whose footprint fits.
func planMicro(tr *hyperat.Trainer, budget int64) error {
	if budget == 0 || tr.Cfg.Micro > 0 {
		return nil
	}
	f, err := tr.PlanMicro(sysmem.Room(budget))
	if err != nil {
		return err
	}
	if f.Micro == 0 {
		return fmt.Errorf("a memory budget of %s cannot hold one image per micro-batch (one needs %s besides the %s held)",
			sysmem.Format(budget), sysmem.Format(f.Total()), sysmem.Format(sysmem.InUse()))
	}
	tr.Cfg.Micro = f.Micro
	fmt.Fprintf(os.Stderr, "go: --max-memory %s: micro-batches of %d, about %s planned besides the %s held\n",
		sysmem.Format(budget), f.Micro, sysmem.Format(f.Total()), sysmem.Format(sysmem.InUse()))
	return nil
}

// targets says which layers carry a LoRA, by kind (the PyTorch twin adapts
// the same ones).
func targets(tr *hyperat.Trainer) string {
	count := map[string]int{}
	dims := map[string]string{}
	for _, t := range tr.Net.Targets {
		count[t.Kind]++
		dims[t.Kind] = fmt.Sprintf("%dx%d", t.In, t.Out)
	}
	kinds := make([]string, 0, len(count))
	for k := range count {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	parts := make([]string, len(kinds))
	for i, k := range kinds {
		parts[i] = fmt.Sprintf("%d %s (%s)", count[k], k, dims[k])
	}
	return fmt.Sprintf("LoRA rank %d on %s", tr.Cfg.Rank, strings.Join(parts, ", "))
}

// pgdBatch times vitb-pgd: PGD on one batch of random images, every image
// attacked (as a training attack does, attack.PGD.Perturb), each step a
// forward and an input gradient of the cross-entropy; no clean or final
// forward. Its twin is bench/torch_pgd.py --vitb.
func pgdBatch(args []string) error {
	fs := flag.NewFlagSet("vitb-pgd", flag.ContinueOnError)
	path := fs.String("model", "", "ONNX image classifier")
	batch := fs.Int("batch", vitbBatch, "images")
	eps := fs.Float64("eps", 8.0/255, "attack radius")
	steps := fs.Int("steps", 10, "PGD steps")
	warm := fs.Int("warm", 1, "untimed attacks first (the first compiles; 0: the first is timed)")
	iters := fs.Int("iters", 1, "timed attacks")
	pass := fs.Int("pass", 0, "images per pass (0: the whole batch, or the most --max-memory holds)")
	maxMem := fs.String("max-memory", "", "memory budget such as 12G: passes as large as it holds")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *path == "" {
		return fmt.Errorf("--model: give the ONNX file (bench/vitb_e2e_inputs.py --no-images DIR makes ViT-B/16)")
	}
	if *batch < 1 || *steps < 1 || *iters < 1 || *pass < 0 || *warm < 0 {
		return fmt.Errorf("--batch, --steps and --iters must be at least 1 and --pass and --warm at least 0")
	}
	t0 := time.Now()
	c, err := model.Load(*path)
	if err != nil {
		return err
	}
	load := time.Since(t0)
	x := bench.RandomBatch(*batch, c.InputShape(), 1)
	y := bench.Labels(*batch, c.Classes())
	p := *batch
	if *pass > 0 {
		p = min(*pass, *batch)
	} else if *maxMem != "" {
		budget, err := sysmem.Parse(*maxMem)
		if err != nil {
			return fmt.Errorf("--max-memory: %v", err)
		}
		sysmem.Limit(budget)
		fit, need, err := compile.LargestBatch(sysmem.Room(budget), *batch, c.Footprint)
		if err != nil {
			return err
		}
		if fit == 0 {
			return fmt.Errorf("a memory budget of %s cannot hold one image per pass (one needs %s)", sysmem.Format(budget), sysmem.Format(need))
		}
		p = fit
	}
	run := func() error { return perturb(c, x, y, *eps, *steps, p) }
	t0 = time.Now()
	if err := run(); err != nil {
		return err
	}
	first := time.Since(t0)
	// --warm 0: the first attack (compiling included) is one of the timed ones
	var ts []time.Duration
	if *warm == 0 {
		ts = append(ts, first)
	}
	more, err := bench.Time(max(*warm-1, 0), *iters-len(ts), run)
	if err != nil {
		return err
	}
	ts = append(ts, more...)
	fmt.Fprintf(os.Stderr, "go vitb-pgd: batch %d in passes of %d, %d steps, best %.3fs, median %.3fs per attack\n",
		*batch, p, *steps, bench.Best(ts).Seconds(), bench.Median(ts).Seconds())
	rec := map[string]any{"bench": "vitb_pgd", "batch": *batch, "pass": p, "steps": *steps, "eps": *eps,
		"seconds": seconds(ts), "load_s": load.Seconds()}
	if *warm > 0 { // else the first is among the timed ones
		rec["first_s"] = first.Seconds()
	}
	emit(rec)
	return nil
}

// perturb runs steps of PGD on every image of x, pass images at a time,
// image i starting from its own uniform draw.
func perturb(c *model.Classifier, x *graph.Tensor, y []int, eps float64, steps, pass int) error {
	n, d := x.Shape[0], graph.Numel(x.Shape[1:])
	for lo := 0; lo < n; lo += pass {
		hi := min(lo+pass, n)
		xb := graph.F32(append([]int{hi - lo}, x.Shape[1:]...), x.F[lo*d:hi*d])
		start := attack.UniformStart(eps, func(i int) *rand.Rand { return rand.New(rand.NewPCG(uint64(lo+i), 7)) })
		rule := func(k int, z, g []float64) float64 { return loss.CrossEntropy(z, y[lo+k], g) }
		if _, err := (attack.PGD{Steps: steps}).Perturb(c, xb, eps, start, rule); err != nil {
			return err
		}
	}
	return nil
}
