package compile_test

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/testutil"
)

// weightsAsInputs loads the fixture ViT with every float weight of more than
// one value turned into a graph input (as a trainer feeds them), and returns
// the graph, its loss, the inputs made and their data.
func weightsAsInputs(t *testing.T) (*graph.Graph, *graph.Value, []*graph.Value, []*graph.Tensor) {
	t.Helper()
	m, err := onnximport.Load(testutil.Fixture("models", "mnist_vit_op17.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	g := m.Graph
	_, loss := withCE(g, 10)
	var ws []*graph.Value
	var data []*graph.Tensor
	for _, p := range slices.Clone(g.Params) {
		if p.DType == graph.Float32 && p.Const.Numel() > 1 {
			ws = append(ws, p)
			data = append(data, g.ParamToInput(p))
		}
	}
	return g, loss, ws, data
}

// A program that borrows its weight inputs computes the bits of one that
// copies them in, holds exactly their bytes less, and reads the caller's
// data at every run: a weight changed between runs changes the result as it
// changes the copying program's (a stale copy, or a view of the input bound
// to old data, would not). Views of a borrowed input follow it.
func TestBorrowedInputsAreReadInPlace(t *testing.T) {
	g, loss, ws, data := weightsAsInputs(t)
	// a reshaped view of one weight, read by the loss, so that an alias of a
	// borrowed input is exercised whatever the exporter's layout
	w0 := ws[0]
	flat := g.Const("flat_shape", &graph.Tensor{DType: graph.Int64, Shape: []int{1}, I: []int64{-1}})
	view := g.Op("Reshape", nil, w0, flat)
	sum := g.Op("ReduceSum", graph.Attrs{"keepdims": int64(0)}, view)
	total := g.Op("Add", nil, loss, sum)
	g.Outputs = append(g.Outputs, total)

	const batch = 3
	x := g.Inputs[0]
	wrt := append([]*graph.Value{x}, ws[:4]...)
	opts := compile.Options{Batch: batch, Verify: true, Grad: &compile.GradSpec{Loss: total, Wrt: wrt}}
	copying, err := compile.Compile(g, opts)
	if err != nil {
		t.Fatal(err)
	}
	bopts := opts
	bopts.Borrowed = ws
	planned, err := compile.Plan(g, bopts)
	if err != nil {
		t.Fatal(err)
	}
	borrowing, err := compile.Compile(g, bopts)
	if err != nil {
		t.Fatal(err)
	}
	var wbytes int64
	for _, d := range data {
		wbytes += 4 * int64(len(d.F))
	}
	cm, bm := copying.Memory(), borrowing.Memory()
	if bm != planned {
		t.Fatalf("Plan says %+v, the borrowing program holds %+v", planned, bm)
	}
	if cm.Buffers-bm.Buffers != wbytes || cm.Arena != bm.Arena {
		t.Fatalf("borrowing holds %+v, copying %+v: want exactly the weights' %d bytes less", bm, cm, wbytes)
	}
	if got := compile.Allocated(borrowing, g); got != bm.Total() {
		t.Fatalf("Memory says %d bytes, the borrowing program's buffers occupy %d", bm.Total(), got)
	}

	rng := rand.New(rand.NewPCG(7, 8))
	byName := map[string]*graph.Tensor{}
	for i, w := range ws {
		byName[w.Name] = data[i]
	}
	inputs := func() []*graph.Tensor {
		var ins []*graph.Tensor
		for i, in := range g.Inputs {
			if d, ok := byName[in.Name]; ok {
				ins = append(ins, d)
				continue
			}
			tt := graph.NewTensor(graph.Float32, copying.Inputs[i].StaticShape())
			if in.Name == "onehot" {
				for i := range batch {
					tt.F[i*10+rng.IntN(10)] = 1
				}
			} else {
				for i := range tt.F {
					tt.F[i] = rng.Float32()
				}
			}
			ins = append(ins, tt)
		}
		return ins
	}
	run := func(p *compile.Program, ins []*graph.Tensor) [][]float32 {
		t.Helper()
		outs, err := p.Run(ins...)
		if err != nil {
			t.Fatal(err)
		}
		var res [][]float32
		for _, o := range outs {
			res = append(res, slices.Clone(o.F))
		}
		for _, v := range wrt {
			res = append(res, slices.Clone(p.Grad(v).F))
		}
		return res
	}
	same := func(what string, a, b [][]float32) {
		t.Helper()
		for i := range a {
			if !slices.Equal(a[i], b[i]) {
				t.Fatalf("%s: result %d differs between the borrowing and the copying program", what, i)
			}
		}
	}
	ins := inputs()
	first := run(borrowing, ins)
	same("first run", first, run(copying, ins))

	// change the caller's weights in place: the borrowing program must see it
	for _, d := range []*graph.Tensor{data[0], data[len(data)/2], data[len(data)-1]} {
		for i := range d.F {
			d.F[i] += 0.01 * (rng.Float32() - 0.5)
		}
	}
	second := run(borrowing, ins)
	same("after the weights changed", second, run(copying, ins))
	if slices.Equal(first[len(g.Outputs)-1], second[len(g.Outputs)-1]) {
		t.Fatal("the loss did not change with the weights: the test shows nothing")
	}

	// another caller's tensors: the program follows them, also through the view
	other := slices.Clone(ins)
	for i, in := range g.Inputs {
		if _, ok := byName[in.Name]; ok {
			c := ins[i].Clone()
			for j := range c.F {
				c.F[j] *= 0.9
			}
			other[i] = c
		}
	}
	same("other tensors", run(borrowing, other), run(copying, other))
}

// Borrowing something that is not a float input of the graph, or feeding a
// borrowed input a tensor of the wrong size, is an error, not a wrong result.
func TestBorrowedInputsRefuseMisuse(t *testing.T) {
	g, loss, ws, data := weightsAsInputs(t)
	opts := compile.Options{Batch: 1, Grad: &compile.GradSpec{Loss: loss, Wrt: g.Inputs[:1]}}
	bad := opts
	bad.Borrowed = []*graph.Value{loss}
	if _, err := compile.Compile(g, bad); err == nil || !strings.Contains(err.Error(), "not a float input") {
		t.Fatalf("borrowing the loss: got %v", err)
	}
	opts.Borrowed = ws
	p, err := compile.Compile(g, opts)
	if err != nil {
		t.Fatal(err)
	}
	var ins []*graph.Tensor
	for k, in := range g.Inputs {
		if i := slices.Index(ws, in); i >= 0 {
			ins = append(ins, data[i])
		} else {
			ins = append(ins, graph.NewTensor(graph.Float32, p.Inputs[k].StaticShape()))
		}
	}
	if _, err := p.Run(ins...); err != nil {
		t.Fatal(err)
	}
	i := slices.Index(g.Inputs, ws[0])
	short := &graph.Tensor{DType: graph.Float32, Shape: ins[i].Shape, F: ins[i].F[:len(ins[i].F)-1]}
	ins[i] = short
	if _, err := p.Run(ins...); err == nil || !strings.Contains(err.Error(), ws[0].Name) {
		t.Fatalf("a short tensor for a borrowed input: got %v", err)
	}
}
