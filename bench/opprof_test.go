package bench

import (
	"fmt"
	"os"
	"testing"

	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/kernels"
)

// TestOpProfile prints where one HyperAT iteration spends its time, by
// operator, when HYPERAT_OPPROF names a defense (pgdat, trades, mart);
// HYPERAT_OPPROF_PRECISION=bf16 runs the attacks with bfloat16 products.
func TestOpProfile(t *testing.T) {
	d := os.Getenv("HYPERAT_OPPROF")
	if d == "" {
		t.Skip("HYPERAT_OPPROF is not set")
	}
	cfg := HyperATConfig([]string{d}, 0.1, 64)
	if p := os.Getenv("HYPERAT_OPPROF_PRECISION"); p != "" {
		var err error
		if cfg.AttackPrecision, err = kernels.ParsePrecision(p); err != nil {
			t.Fatal(err)
		}
	}
	tr, err := NewTrainer(benchModel(t), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Step(); err != nil {
		t.Fatal(err)
	}
	for _, p := range tr.Programs() {
		p.Profile(true)
	}
	const iters = 3
	for i := 0; i < iters; i++ {
		if _, err := tr.Step(); err != nil {
			t.Fatal(err)
		}
	}
	by := map[string]*compile.OpTime{}
	var order []string
	for k, p := range tr.Programs() {
		var tot float64
		for _, o := range p.OpTimes() {
			tot += float64(o.Time.Microseconds()) / 1000 / iters
		}
		fmt.Printf("program %d: %d steps, %.1f ms/iter\n", k, len(p.Graph.Nodes), tot)
		if os.Getenv("HYPERAT_OPPROF_STEPS") != "" && k == 0 {
			for _, st := range p.StepTimes() {
				n := st.Node
				var shapes []string
				for _, in := range n.Inputs {
					if in != nil {
						shapes = append(shapes, fmt.Sprint(in.StaticShape()))
					}
				}
				fmt.Printf("      %8.2f ms %-14s %v %v -> %v\n", float64(st.Time.Microseconds())/1000/iters, n.Op, n.Attrs, shapes, n.Outputs[0].StaticShape())
			}
		}
		if os.Getenv("HYPERAT_OPPROF_ALL") != "" {
			for _, o := range p.OpTimes() {
				fmt.Printf("    %-16s %4d steps %8.1f ms/iter\n", o.Op, o.Steps, float64(o.Time.Microseconds())/1000/iters)
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
	for _, op := range order {
		o := by[op]
		fmt.Printf("%-16s %4d steps %8.1f ms/iter\n", o.Op, o.Steps, float64(o.Time.Microseconds())/1000/iters)
	}
}
