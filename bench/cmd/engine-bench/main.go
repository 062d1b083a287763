// Command engine-bench times the engine on the workloads of bench/run.sh and
// prints each measurement as one line "RESULT {json}" on stdout, the format
// the PyTorch twins (bench/torch_*.py) print too.
//
//	engine-bench fwdgrad [--model M] [--batch 64] [--warm 1] [--iters 10] [--precision fp32]
//	engine-bench hyperat [--model M] [--defenses pgdat,trades,mart] [--batch 64] [--eps 0.1] [--warm 1] [--iters 3] [--attack-precision fp32]
//	engine-bench pgd     [--model M] [--data fixtures/mnist] [--limit 640] [--batch 64] [--eps 0.1] [--steps 10] [--attack-precision fp32]
//	engine-bench vitb    --model VITB.onnx [--batch 8] [--warm 1] [--iters 3] [--precision fp32]
//	engine-bench vitb-hyperat --model VITB.onnx [--defenses pgdat] [--batch 128] [--eps 8/255] [--steps 10] [--warm 1] [--iters 1] [--micro M | --max-memory SIZE]
//	engine-bench vitb-pgd     --model VITB.onnx [--batch 128] [--eps 8/255] [--steps 10] [--warm 1] [--iters 1] [--pass P | --max-memory SIZE]
//
// fwdgrad: forward plus input gradient of the mean cross-entropy (one PGD
// step) on random images; --precision bf16 runs its products in bfloat16,
// as hyperat-tune's attack steps do by default (the RESULT's tool_default
// says whether it is that default). hyperat: one HyperAT iteration per defense, each
// defense with its own trainer, one after the other in this process (the
// memory of one is given back before the next is made, so the peak RSS is
// that of one training run). --attack-precision fp32,bf16 times the
// iterations of one trainer per attack precision in turn, iteration after
// iteration, so that both meet the same load on a shared machine. pgd:
// clean accuracy and PGD-steps accuracy (uniform start, step 2.5 eps /
// steps, cross-entropy) on the first --limit test images; run it under
// /usr/bin/time for the whole process; --attack-precision fp32,bf16 runs the
// attack with each precision of the input gradient's products in turn, on
// the same images and random starts, the logits that judge it staying fp32.
// vitb: fwdgrad on a large model. vitb-hyperat: hyperat with the defaults of
// the ViT-B/16 measurement (PGD-AT alone, eps 8/255, one timed iteration); its
// batch may run in micro-batches (--micro, or planned by the trainer from
// --max-memory as hyperat-tune does). vitb-pgd: --steps PGD steps on one
// batch of random images, every image attacked, each step a forward and an
// input gradient (no clean or final forward); --pass or --max-memory split
// the batch into passes. hyperat also takes --steps, --micro and --max-memory.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/hyperat/hyperat/bench"
	"github.com/hyperat/hyperat/data"
	"github.com/hyperat/hyperat/hyperat"
	"github.com/hyperat/hyperat/internal/sysmem"
	"github.com/hyperat/hyperat/kernels"
	"github.com/hyperat/hyperat/model"
)

const defaultModel = "fixtures/models/mnist_vit_op17.onnx"

var start = time.Now()

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: engine-bench fwdgrad|hyperat|pgd|vitb|vitb-hyperat|vitb-pgd [flags] (see the package doc)")
		os.Exit(2)
	}
	cmd, args := os.Args[1], os.Args[2:]
	var err error
	switch cmd {
	case "fwdgrad", "vitb":
		err = fwdgrad(cmd, args)
	case "hyperat", "vitb-hyperat":
		err = hyperatIter(cmd, args)
	case "pgd":
		err = pgd(args)
	case "vitb-pgd":
		err = pgdBatch(args)
	default:
		err = fmt.Errorf("unknown workload %q: want fwdgrad, hyperat, pgd, vitb, vitb-hyperat or vitb-pgd", cmd)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "engine-bench %s: %v\n", cmd, err)
		os.Exit(1)
	}
}

// emit prints one measurement for bench/report.py.
func emit(fields map[string]any) {
	fields["side"] = "go"
	fields["threads"] = runtime.GOMAXPROCS(0)
	b, err := json.Marshal(fields)
	if err != nil {
		panic(err)
	}
	fmt.Printf("RESULT %s\n", b)
}

func seconds(ts []time.Duration) []float64 {
	s := make([]float64, len(ts))
	for i, t := range ts {
		s[i] = t.Seconds()
	}
	return s
}

func fwdgrad(name string, args []string) error {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	path := fs.String("model", defaultModel, "ONNX image classifier")
	batch := fs.Int("batch", 64, "batch size")
	warm := fs.Int("warm", 1, "untimed runs first (the first compiles)")
	iters := fs.Int("iters", 10, "timed runs")
	precName := fs.String("precision", "fp32", "products of the forward and the input gradient: fp32 or bf16")
	if err := fs.Parse(args); err != nil {
		return err
	}
	prec, err := kernels.ParsePrecision(*precName)
	if err != nil {
		return err
	}
	t0 := time.Now()
	c, err := model.Load(*path)
	if err != nil {
		return err
	}
	c.GradPrecision = prec
	load := time.Since(t0)
	x := bench.RandomBatch(*batch, c.InputShape(), 1)
	seed := bench.CESeed(bench.Labels(*batch, c.Classes()))
	t0 = time.Now()
	if _, _, err := c.InputGrad(x, seed); err != nil {
		return err
	}
	first := time.Since(t0)
	ts, err := bench.Time(max(*warm-1, 0), *iters, func() error {
		_, _, err := c.InputGrad(x, seed)
		return err
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "go %s (%s): batch %d, best %.3fs, median %.3fs per forward+input gradient\n",
		name, prec, *batch, bench.Best(ts).Seconds(), bench.Median(ts).Seconds())
	emit(map[string]any{"bench": name, "batch": *batch, "seconds": seconds(ts),
		"load_s": load.Seconds(), "first_s": first.Seconds(), "precision": prec.String(),
		"tool_default": prec == hyperat.DefaultConfig().AttackPrecision})
	return nil
}

// hyperatOpts is one hyperat or vitb-hyperat measurement.
type hyperatOpts struct {
	bench       string // the RESULT's name: hyperat or vitb_hyperat
	path        string
	batch       int
	eps         float64
	steps       int
	warm, iters int
	micro       int   // images per micro-batch (0: planned from budget, or the whole batch)
	budget      int64 // --max-memory (0: none)
	precs       []kernels.Precision
}

func hyperatIter(name string, args []string) error {
	vitb := name == "vitb-hyperat"
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	o := hyperatOpts{bench: "hyperat"}
	defModel, defDefs, defBatch, defEps, defIters := defaultModel, "pgdat,trades,mart", 64, 0.1, 3
	if vitb {
		o.bench = "vitb_hyperat"
		defModel, defDefs, defBatch, defEps, defIters = "", "pgdat", vitbBatch, 8.0/255, 1
	}
	fs.StringVar(&o.path, "model", defModel, "ONNX ViT")
	defs := fs.String("defenses", defDefs, "defenses, each timed alone")
	fs.IntVar(&o.batch, "batch", defBatch, "batch size")
	fs.Float64Var(&o.eps, "eps", defEps, "attack radius")
	fs.IntVar(&o.steps, "steps", 10, "steps of the inner attack")
	fs.IntVar(&o.warm, "warm", 1, "untimed iterations first (the first compiles)")
	fs.IntVar(&o.iters, "iters", defIters, "timed iterations per defense")
	fs.IntVar(&o.micro, "micro", 0, "images per micro-batch (0: the whole batch, or planned from --max-memory)")
	maxMem := fs.String("max-memory", "", "memory budget such as 12G: the trainer's planner picks the micro-batches")
	precs := fs.String("attack-precision", "fp32", "products of the attacks: fp32, bf16, or both (fp32,bf16) timed in turn")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.path == "" {
		return fmt.Errorf("--model: give the ONNX file (bench/vitb_e2e_inputs.py --no-images DIR makes ViT-B/16)")
	}
	if o.batch < 1 || o.steps < 1 || o.iters < 1 || o.micro < 0 {
		return fmt.Errorf("--batch, --steps and --iters must be at least 1 and --micro at least 0")
	}
	if *maxMem != "" {
		var err error
		if o.budget, err = sysmem.Parse(*maxMem); err != nil {
			return fmt.Errorf("--max-memory: %v", err)
		}
		sysmem.Limit(o.budget)
	}
	for _, s := range strings.Split(*precs, ",") {
		p, err := kernels.ParsePrecision(s)
		if err != nil {
			return err
		}
		o.precs = append(o.precs, p)
	}
	for _, d := range strings.Split(*defs, ",") {
		if err := hyperatDefense(o, d); err != nil {
			return err
		}
		// a training run holds one trainer: this one's memory goes back
		// before the next is made, so the peak RSS is one run's
		runtime.GC()
		debug.FreeOSMemory()
	}
	return nil
}

func hyperatDefense(o hyperatOpts, d string) error {
	trs := make([]*hyperat.Trainer, len(o.precs))
	first := make([]time.Duration, len(o.precs))
	for i, p := range o.precs {
		cfg := bench.HyperATConfig([]string{d}, o.eps, o.batch)
		cfg.AttackPrecision = p
		cfg.Steps = o.steps
		cfg.Micro = o.micro
		tr, err := bench.NewTrainer(o.path, cfg)
		if err != nil {
			return err
		}
		if err := planMicro(tr, o.budget); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "go %s %s: %s; batch %d in micro-batches of %d\n",
			o.bench, d, targets(tr), o.batch, tr.MicroSize())
		t0 := time.Now()
		if _, err := tr.Step(); err != nil {
			return err
		}
		first[i], trs[i] = time.Since(t0), tr
	}
	// one iteration of each trainer in turn
	ts := make([][]time.Duration, len(o.precs))
	for i := -max(o.warm-1, 0); i < o.iters; i++ {
		for j, tr := range trs {
			t0 := time.Now()
			if _, err := tr.Step(); err != nil {
				return err
			}
			if i >= 0 {
				ts[j] = append(ts[j], time.Since(t0))
			}
		}
	}
	for j, p := range o.precs {
		fmt.Fprintf(os.Stderr, "go %s %s (attacks %v): batch %d, best %.3fs, median %.3fs per iteration\n",
			o.bench, d, p, o.batch, bench.Best(ts[j]).Seconds(), bench.Median(ts[j]).Seconds())
		emit(map[string]any{"bench": o.bench, "defense": d, "batch": o.batch, "seconds": seconds(ts[j]),
			"first_s": first[j].Seconds(), "params": trained(trs[j]), "attack_precision": p.String(),
			"tool_default": p == hyperat.DefaultConfig().AttackPrecision,
			"steps":        o.steps, "eps": o.eps, "micro": trs[j].MicroSize(), "lora_layers": len(trs[j].Net.Targets)})
	}
	if len(o.precs) == 2 {
		// each pair of iterations met about the same load
		ratios := make([]time.Duration, len(ts[0]))
		for i := range ratios {
			ratios[i] = time.Duration(float64(time.Second) * ts[0][i].Seconds() / ts[1][i].Seconds())
		}
		fmt.Fprintf(os.Stderr, "go %s %s: %v / %v per pair of iterations: median %.2fx, best %.2fx\n",
			o.bench, d, o.precs[0], o.precs[1], bench.Median(ratios).Seconds(), slices.Max(ratios).Seconds())
	}
	return nil
}

// trained counts the trained values (hypernetwork and head).
func trained(tr *hyperat.Trainer) int {
	n := 0
	for _, p := range tr.Params {
		n += len(p.F)
	}
	return n
}

func pgd(args []string) error {
	fs := flag.NewFlagSet("pgd", flag.ContinueOnError)
	path := fs.String("model", defaultModel, "ONNX image classifier")
	dir := fs.String("data", "fixtures/mnist", "dataset folder (its test split)")
	limit := fs.Int("limit", 640, "the first N test images")
	batch := fs.Int("batch", 64, "batch size")
	eps := fs.Float64("eps", 0.1, "attack radius")
	steps := fs.Int("steps", 10, "PGD steps")
	seed := fs.Uint64("seed", 0, "random start")
	precs := fs.String("attack-precision", "fp32", "products of the input gradient: fp32, bf16, or both (fp32,bf16) in turn")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ds, err := data.Open(*dir, data.Test)
	if err != nil {
		return err
	}
	if *limit > ds.Len() {
		return fmt.Errorf("%s has %d test images, fewer than --limit %d", *dir, ds.Len(), *limit)
	}
	for _, name := range strings.Split(*precs, ",") {
		prec, err := kernels.ParsePrecision(name)
		if err != nil {
			return err
		}
		c, err := model.Load(*path)
		if err != nil {
			return err
		}
		c.GradPrecision = prec
		sh := c.InputShape()
		src := ds.View(sh[0], sh[1], sh[2])
		t0 := time.Now()
		acc, err := hyperat.Evaluate(c, src, ds.First(*limit), *batch, *eps, *steps, *seed)
		if err != nil {
			return err
		}
		attack := time.Since(t0)
		fmt.Fprintf(os.Stderr, "go pgd-%d (gradients %v): %d images, eps %g, clean %.3f, robust %.3f, %.2fs attacking, %.2fs in all\n",
			*steps, prec, acc.N, *eps, acc.Clean, acc.Robust, attack.Seconds(), time.Since(start).Seconds())
		emit(map[string]any{"bench": "pgd", "n": acc.N, "steps": *steps, "clean": acc.Clean, "robust": acc.Robust,
			"attack_s": attack.Seconds(), "process_s": time.Since(start).Seconds(), "attack_precision": prec.String(), "eps": *eps})
	}
	return nil
}
