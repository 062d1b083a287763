package compile_test

import (
	"slices"
	"testing"

	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/testutil"
)

// arenaProgram compiles forward plus the input gradient of a fixture at a
// batch size, on the given arena (nil: its own).
func arenaProgram(t *testing.T, file string, batch int, a *compile.Arena) (*compile.Program, *graph.Value) {
	t.Helper()
	m, err := onnximport.Load(testutil.Fixture("models", file))
	if err != nil {
		t.Fatal(err)
	}
	g := m.Graph
	x := g.Inputs[0]
	_, loss := withCE(g, 10)
	p, err := compile.Compile(g, compile.Options{Batch: batch, Arena: a, Grad: &compile.GradSpec{Loss: loss, Wrt: []*graph.Value{x}}})
	if err != nil {
		t.Fatal(err)
	}
	return p, x
}

// Programs sharing an arena give the results of programs with their own,
// bit for bit, when run in turn, also after a later, larger program has
// replaced the arena's memory; the arena is the largest program's size;
// Forward then Backward with another program run in between is refused.
func TestSharedArenaKeepsResults(t *testing.T) {
	const file = "mnist_vit_op17.onnx"
	result := func(p *compile.Program, x *graph.Value) []float32 {
		t.Helper()
		outs, err := p.Run(inputsFor(p)...)
		if err != nil {
			t.Fatal(err)
		}
		return slices.Concat(outs[0].F, p.Loss().F, p.Grad(x).F)
	}
	small, xs := arenaProgram(t, file, 2, nil)
	large, xl := arenaProgram(t, file, 5, nil)
	wantSmall, wantLarge := result(small, xs), result(large, xl)

	a := compile.NewArena()
	s, sx := arenaProgram(t, file, 2, a)
	check := func(what string, got, want []float32) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Fatalf("%s: results differ from the program with its own arena", what)
		}
	}
	check("small, alone on the arena", result(s, sx), wantSmall)
	l, lx := arenaProgram(t, file, 5, a) // grows the arena
	if a.Floats() != max(small.ArenaFloats(), large.ArenaFloats()) || a.Floats() != large.ArenaFloats() {
		t.Fatalf("arena %d floats, programs need %d and %d", a.Floats(), small.ArenaFloats(), large.ArenaFloats())
	}
	for i := 0; i < 2; i++ {
		check("large", result(l, lx), wantLarge)
		check("small after the arena grew", result(s, sx), wantSmall)
	}
	// the small program now works in the grown arena, not in memory of its own
	inside := 0
	for _, n := range s.Graph.Nodes {
		for _, o := range n.Outputs {
			if v := s.Value(o); v != nil && v.DType == graph.Float32 && !o.IsConst() {
				if compile.InArena(a, v.F) {
					inside++
				}
			}
		}
	}
	if inside == 0 {
		t.Fatal("no value of the small program is in the shared arena after it grew")
	}
	// Forward and Backward apart: another program's run in between is refused
	f1, f1x := seedProgram(t, file, 2, a)
	f2, _ := seedProgram(t, file, 3, a)
	run := func(p *compile.Program) []*graph.Tensor {
		t.Helper()
		ins := inputsFor(p)
		outs, err := p.Forward(ins[:len(ins)-1]...)
		if err != nil {
			t.Fatal(err)
		}
		return outs
	}
	run(f1)
	run(f2)
	seed := graph.NewTensor(graph.Float32, []int{2, 10})
	seed.F[3] = 1
	if err := f1.Backward(seed); err == nil {
		t.Fatal("Backward ran after another program's Forward on the shared arena")
	}
	run(f1)
	if err := f1.Backward(seed); err != nil {
		t.Fatal(err)
	}
	own, ownx := seedProgram(t, file, 2, nil)
	run(own)
	if err := own.Backward(seed); err != nil {
		t.Fatal(err)
	}
	check("forward and backward apart", f1.Grad(f1x).F, own.Grad(ownx).F)
}

// seedProgram compiles the vector-Jacobian program of the logits with
// respect to the input (the seed is the last input).
func seedProgram(t *testing.T, file string, batch int, a *compile.Arena) (*compile.Program, *graph.Value) {
	t.Helper()
	m, err := onnximport.Load(testutil.Fixture("models", file))
	if err != nil {
		t.Fatal(err)
	}
	g := m.Graph
	x := g.Inputs[0]
	seed := g.AddInput("seed", graph.Float32, graph.StaticShape(batch, 10))
	p, err := compile.Compile(g, compile.Options{Batch: batch, Arena: a, Grad: &compile.GradSpec{Loss: g.Outputs[0], Seed: seed, Wrt: []*graph.Value{x}}})
	if err != nil {
		t.Fatal(err)
	}
	return p, x
}
