package compile_test

import (
	"path/filepath"
	"runtime"
	"testing"

	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/testutil"
)

// gradProgram compiles forward plus the input gradient of the cross-entropy.
func gradProgram(t testing.TB, file string, batch int, disable ...string) (*compile.Program, *graph.Value) {
	t.Helper()
	m, err := onnximport.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	g := m.Graph
	x := g.Inputs[0]
	_, loss := withCE(g, 10)
	p, err := compile.Compile(g, compile.Options{Batch: batch, Disable: disable, Grad: &compile.GradSpec{Loss: loss, Wrt: []*graph.Value{x}}})
	if err != nil {
		t.Fatal(err)
	}
	return p, x
}

func inputsFor(p *compile.Program) []*graph.Tensor {
	var ins []*graph.Tensor
	for k, in := range p.Inputs {
		t := graph.NewTensor(in.DType, in.StaticShape())
		for i := range t.F {
			t.F[i] = float32((i*7+k)%101) / 101
		}
		if in.Name == "onehot" {
			clear(t.F)
			for r := 0; r < t.Shape[0]; r++ {
				t.F[r*t.Shape[1]+r%t.Shape[1]] = 1
			}
		}
		ins = append(ins, t)
	}
	return ins
}

// The planned arena reuses memory (it is much smaller than one buffer per
// value), and the results are bit-identical to the unplanned program's.
func TestMemoryPlanReusesAndKeepsResults(t *testing.T) {
	file := testutil.Fixture("models", "tv_vit_op17.onnx")
	planned, x := gradProgram(t, file, 4)
	plain, x2 := gradProgram(t, file, 4, "memplan")
	ins := inputsFor(planned)
	if _, err := planned.Run(ins...); err != nil {
		t.Fatal(err)
	}
	if _, err := plain.Run(ins...); err != nil {
		t.Fatal(err)
	}
	a, b := planned.Grad(x).F, plain.Grad(x2).F
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("gradient element %d: planned %g, unplanned %g", i, a[i], b[i])
		}
	}
	if planned.Loss().F[0] != plain.Loss().F[0] {
		t.Fatal("losses differ")
	}
	total := 0
	for _, n := range planned.Graph.Nodes {
		for _, o := range n.Outputs {
			if o.DType == graph.Float32 {
				total += graph.Numel(o.StaticShape())
			}
		}
	}
	if arena := planned.ArenaFloats(); arena*2 > total {
		t.Fatalf("arena holds %d floats for %d floats of values: no reuse", arena, total)
	} else {
		t.Logf("arena %d floats for %d floats of values (%.0f%%)", arena, total, 100*float64(arena)/float64(total))
	}
}

// A training step allocates nothing once compiled.
func TestRunDoesNotAllocate(t *testing.T) {
	for _, f := range []string{"tv_vit_op14.onnx", "hf_vit_op16.onnx"} {
		p, _ := gradProgram(t, testutil.Fixture("models", f), 2)
		ins := inputsFor(p)
		if allocs := testing.AllocsPerRun(3, func() {
			if _, err := p.Run(ins...); err != nil {
				t.Fatal(err)
			}
		}); allocs != 0 {
			t.Errorf("%s: %v allocations per Run", f, allocs)
		}
	}
	if d := testutil.SharedModels(); d != "" {
		p, _ := gradProgram(t, filepath.Join(d, "timm_vit_c32_dynamo_op20.onnx"), 2)
		ins := inputsFor(p)
		if allocs := testing.AllocsPerRun(2, func() { p.Run(ins...) }); allocs != 0 {
			t.Errorf("shared model: %v allocations per Run", allocs)
		}
	}
}

// A large input is copied in on all cores, allocating nothing, and arrives
// whole whatever the number of cores.
func TestLargeInputCopy(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	g := graph.New()
	x := g.AddInput("x", graph.Float32, graph.StaticShape(300, 200))
	g.Outputs = []*graph.Value{g.Op("Neg", nil, x)}
	p, err := compile.Compile(g, compile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	in := graph.NewTensor(graph.Float32, []int{300, 200})
	for _, procs := range []int{1, 2, 3, 8} {
		runtime.GOMAXPROCS(procs)
		for i := range in.F {
			in.F[i] = float32(i*procs%1009) - 500
		}
		var out *graph.Tensor
		if allocs := testing.AllocsPerRun(3, func() {
			outs, err := p.Run(in)
			if err != nil {
				t.Fatal(err)
			}
			out = outs[0]
		}); allocs != 0 {
			t.Errorf("GOMAXPROCS %d: %v allocations per Run", procs, allocs)
		}
		for i, v := range out.F {
			if v != -in.F[i] {
				t.Fatalf("GOMAXPROCS %d: element %d is %g, want %g", procs, i, v, -in.F[i])
			}
		}
	}
}

// Results are bit-identical whatever the number of cores: work is split so
// that every element is computed by the same operations in the same order.
func TestDeterministicAcrossCores(t *testing.T) {
	p, x := gradProgram(t, testutil.Fixture("models", "hf_vit_op16.onnx"), 8)
	ins := inputsFor(p)
	var ref []float32
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, procs := range []int{1, 2, 3, 4} {
		runtime.GOMAXPROCS(procs)
		if _, err := p.Run(ins...); err != nil {
			t.Fatal(err)
		}
		g := append([]float32{}, p.Grad(x).F...)
		g = append(g, p.Loss().F...)
		if ref == nil {
			ref = g
			continue
		}
		for i := range g {
			if g[i] != ref[i] {
				t.Fatalf("GOMAXPROCS=%d: element %d is %g, with 1 core %g", procs, i, g[i], ref[i])
			}
		}
	}
}

// An output that is a view (a Reshape) of a value read again later keeps
// that value's buffer to the end: later steps must not reuse it.
func TestPinnedViewKeepsItsBuffer(t *testing.T) {
	g := graph.New()
	x := g.AddInput("x", graph.Float32, graph.StaticShape(4, 6))
	a := g.Op("Relu", nil, x)
	view := g.Op("Reshape", nil, a, g.Const("shape", graph.I64([]int{1}, []int64{24})))
	b := g.Op("Neg", nil, a) // reads a after the view is made
	c := g.Op("Exp", nil, b) // may take a's buffer if it is freed
	d := g.Op("Sqrt", nil, g.Op("Abs", nil, c))
	g.Outputs = []*graph.Value{d, view}
	p, err := compile.Compile(g, compile.Options{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	in := graph.NewTensor(graph.Float32, []int{4, 6})
	for i := range in.F {
		in.F[i] = float32(i%7) - 3
	}
	outs, err := p.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range outs[1].F {
		if want := max(in.F[i], 0); v != want {
			t.Fatalf("view element %d = %g, want %g", i, v, want)
		}
	}
}
