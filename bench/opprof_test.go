package bench

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/kernels"
)

// TestOpProfile prints where one HyperAT iteration spends its time, by
// operator, when HYPERAT_OPPROF names a defense (pgdat, trades, mart);
// HYPERAT_OPPROF_PRECISION=bf16 runs the attacks with bfloat16 products.
// HYPERAT_OPPROF_MODEL profiles another model than the fixture MNIST ViT
// (the ViT-B/16 of bench/vitb_e2e_inputs.py: eps 8/255 then), and
// HYPERAT_OPPROF_BATCH (64), HYPERAT_OPPROF_MICRO (0: the whole batch),
// HYPERAT_OPPROF_ATTACK_STEPS (10) and HYPERAT_OPPROF_ITERS (3) set the
// iteration and how many are profiled.
func TestOpProfile(t *testing.T) {
	d := os.Getenv("HYPERAT_OPPROF")
	if d == "" {
		t.Skip("HYPERAT_OPPROF is not set")
	}
	path, eps := os.Getenv("HYPERAT_OPPROF_MODEL"), 0.1
	if path == "" {
		path = benchModel(t)
	} else {
		eps = 8.0 / 255
	}
	batch, micro := envInt(t, "HYPERAT_OPPROF_BATCH", 64), envInt(t, "HYPERAT_OPPROF_MICRO", 0)
	iters := envInt(t, "HYPERAT_OPPROF_ITERS", 3)
	cfg := HyperATConfig([]string{d}, eps, batch)
	cfg.Micro = micro
	cfg.Steps = envInt(t, "HYPERAT_OPPROF_ATTACK_STEPS", cfg.Steps)
	if p := os.Getenv("HYPERAT_OPPROF_PRECISION"); p != "" {
		var err error
		if cfg.AttackPrecision, err = kernels.ParsePrecision(p); err != nil {
			t.Fatal(err)
		}
	}
	tr, err := NewTrainer(path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Step(); err != nil {
		t.Fatal(err)
	}
	for _, p := range tr.Programs() {
		p.Profile(true)
	}
	t0 := time.Now()
	for i := 0; i < iters; i++ {
		if _, err := tr.Step(); err != nil {
			t.Fatal(err)
		}
	}
	wall := time.Since(t0)
	fmt.Printf("%s, batch %d in micro-batches of %d, %d attack steps: %.1f ms/iter over %d iterations\n",
		d, batch, tr.MicroSize(), cfg.Steps, ms(wall, iters), iters)
	printOpTimes(tr.Programs(), iters, wall)
}

// printOpTimes prints each program's time, then the time of every operator
// over all programs, slowest first, with its share of the iterations' wall
// time; what the programs do not account for (the hypernetwork, losses,
// projections, the update) is the last line.
func printOpTimes(progs []*compile.Program, iters int, wall time.Duration) {
	by := map[string]*compile.OpTime{}
	var order []string
	var inside time.Duration
	for k, p := range progs {
		var tot time.Duration
		for _, o := range p.OpTimes() {
			tot += o.Time
		}
		inside += tot
		fmt.Printf("program %d: %d steps, %.1f ms/iter\n", k, len(p.Graph.Nodes), ms(tot, iters))
		if os.Getenv("HYPERAT_OPPROF_STEPS") != "" && k == 0 {
			for _, st := range p.StepTimes() {
				n := st.Node
				var shapes []string
				for _, in := range n.Inputs {
					if in != nil {
						shapes = append(shapes, fmt.Sprint(in.StaticShape()))
					}
				}
				fmt.Printf("      %8.2f ms %-14s %v %v -> %v\n", ms(st.Time, iters), n.Op, n.Attrs, shapes, n.Outputs[0].StaticShape())
			}
		}
		if os.Getenv("HYPERAT_OPPROF_ALL") != "" {
			for _, o := range p.OpTimes() {
				fmt.Printf("    %-16s %4d steps %8.1f ms/iter\n", o.Op, o.Steps, ms(o.Time, iters))
			}
		}
		for _, o := range p.OpTimes() {
			if by[o.Op] == nil {
				by[o.Op] = &compile.OpTime{Op: o.Op}
				order = append(order, o.Op)
			}
			by[o.Op].Steps += o.Steps
			by[o.Op].Time += o.Time
		}
	}
	slices.SortStableFunc(order, func(a, b string) int { return int(by[b].Time - by[a].Time) })
	for _, op := range order {
		o := by[op]
		fmt.Printf("%-20s %4d steps %10.1f ms/iter %5.1f%%\n", o.Op, o.Steps, ms(o.Time, iters), pct(o.Time, wall))
	}
	fmt.Printf("%-20s %15.1f ms/iter %5.1f%%\n", "outside programs", ms(wall-inside, iters), pct(wall-inside, wall))
}

func ms(d time.Duration, iters int) float64 { return float64(d.Microseconds()) / 1000 / float64(iters) }

func pct(d, of time.Duration) float64 { return 100 * d.Seconds() / of.Seconds() }

// envInt is the non-negative integer in the environment variable name, or def.
func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a non-negative integer", name, s)
	}
	return n
}
