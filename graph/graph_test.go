package graph_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/hyperat/hyperat/graph"
)

// small builds y = Relu(x W + b) with a Split feeding two outputs:
// inputs x [batch, 4]; params W [4, 6], b [6].
func small() (g *graph.Graph, x, w, b *graph.Value, split *graph.Node) {
	g = graph.New()
	x = g.AddInput("x", graph.Float32, graph.Shape{{N: -1, Sym: "batch"}, {N: 4}})
	w = g.AddParam("W", graph.NewTensor(graph.Float32, []int{4, 6}))
	b = g.AddParam("b", graph.F32([]int{6}, []float32{1, 2, 3, 4, 5, 6}))
	h := g.Op("MatMul", nil, x, w)
	y := g.Op("Relu", nil, g.Op("Add", nil, h, b))
	split = g.AddNode("Split", "split", []*graph.Value{y, g.Const("sizes", graph.I64([]int{2}, []int64{2, 4}))},
		graph.Attrs{"axis": int64(1)}, "lo", "hi")
	g.Outputs = []*graph.Value{split.Outputs[0], split.Outputs[1]}
	return g, x, w, b, split
}

func TestStaticShape(t *testing.T) {
	s := graph.StaticShape(2, 3)
	if got, ok := s.Static(); !ok || !reflect.DeepEqual(got, []int{2, 3}) {
		t.Fatalf("Static() = %v, %v", got, ok)
	}
	if _, ok := (graph.Shape{{N: -1, Sym: "batch"}, {N: 3}}).Static(); ok {
		t.Error("a symbolic dim is static")
	}
	if _, ok := graph.Shape(nil).Static(); ok {
		t.Error("an unknown rank is static")
	}
	if got, ok := (graph.Shape{}).Static(); !ok || len(got) != 0 {
		t.Errorf("a scalar's shape: %v, %v", got, ok)
	}
	for s, want := range map[string]graph.Shape{
		"[?]":         nil,
		"[]":          {},
		"[batch,3,?]": {{N: -1, Sym: "batch"}, {N: 3}, {N: -1}},
	} {
		if got := want.String(); got != s {
			t.Errorf("String() = %q, want %q", got, s)
		}
	}
	v := &graph.Value{Name: "v", Shape: graph.Shape{{N: -1, Sym: "batch"}}}
	defer func() {
		if r := recover(); r == nil || !strings.Contains(r.(string), `"v"`) {
			t.Errorf("StaticShape of a symbolic value: recovered %v, want a panic naming it", r)
		}
	}()
	v.StaticShape()
}

func TestUniqueName(t *testing.T) {
	g := graph.New()
	got := []string{g.UniqueName("a"), g.UniqueName("a"), g.UniqueName("a"), g.UniqueName(""), g.UniqueName("a_1"), g.UniqueName("b")}
	want := []string{"a", "a_1", "a_2", "v", "a_1_1", "b"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("names %v, want %v", got, want)
	}
	// a graph made without New names values too
	var z graph.Graph
	if a, b := z.UniqueName("x"), z.UniqueName("x"); a != "x" || b != "x_1" {
		t.Errorf("zero graph: %q, %q", a, b)
	}
}

func TestConstructors(t *testing.T) {
	g, x, w, b, split := small()
	if len(g.Inputs) != 1 || g.Inputs[0] != x || x.Def != nil || x.IsConst() {
		t.Fatalf("inputs %v", g.Inputs)
	}
	if !reflect.DeepEqual(g.Params, []*graph.Value{w, b}) || !w.Param || !w.IsConst() {
		t.Fatalf("params %v", g.Params)
	}
	c := g.Const("c", graph.ScalarF32(2))
	if c.Param || !c.IsConst() || len(g.Params) != 2 || c.Shape == nil || len(c.Shape) != 0 {
		t.Errorf("Const made %+v", c)
	}
	if !reflect.DeepEqual(b.StaticShape(), []int{6}) || b.DType != graph.Float32 {
		t.Errorf("param b: %v %v", b.DType, b.Shape)
	}
	if len(g.Nodes) != 4 {
		t.Fatalf("%d nodes", len(g.Nodes))
	}
	for _, n := range g.Nodes {
		for _, o := range n.Outputs {
			if o.Def != n || o.DType != graph.Invalid || o.Shape != nil {
				t.Errorf("%s: output %v (def %p)", n.Op, o, o.Def)
			}
		}
		if n.Attrs == nil {
			t.Errorf("%s: nil attrs", n.Op)
		}
	}
	if split.Outputs[0].Name != "lo" || split.Outputs[1].Name != "hi" || g.Nodes[0].Outputs[0].Name != "matmul" {
		t.Errorf("output names %s %s %s", split.Outputs[0].Name, split.Outputs[1].Name, g.Nodes[0].Outputs[0].Name)
	}
	if n := g.AddNode("Relu", "r", []*graph.Value{x}, nil, ""); n.Outputs[0].Name != "relu_1" {
		t.Errorf("an empty output name became %q, want the op's", n.Outputs[0].Name)
	}
	if split.In(1) == nil || split.In(2) != nil || split.In(5) != nil {
		t.Error("Node.In")
	}
	if g.ParamByName("b") != b || g.ParamByName("nope") != nil {
		t.Error("ParamByName")
	}
	if got := g.NumParams(); got != 4*6+6 {
		t.Errorf("NumParams = %d", got)
	}
	g.AddParam("shape", graph.I64([]int{3}, []int64{1, 2, 3}))
	if got := g.NumParams(); got != 4*6+6 {
		t.Errorf("NumParams counts integer initializers: %d", got)
	}
}

func TestConsumers(t *testing.T) {
	g, x, w, _, split := small()
	sq := g.Op("Mul", nil, x, x)
	u := g.Consumers()
	if len(u[x]) != 3 || u[x][0] != g.Nodes[0] || u[x][1] != sq.Def || u[x][2] != sq.Def {
		t.Errorf("readers of x: %v", u[x])
	}
	if len(u[w]) != 1 || u[w][0] != g.Nodes[0] {
		t.Errorf("readers of W: %v", u[w])
	}
	if len(u[split.Outputs[0]]) != 0 {
		t.Errorf("a graph output nobody reads has readers %v", u[split.Outputs[0]])
	}
}

func TestReplaceUses(t *testing.T) {
	g, x, _, b, split := small()
	add := g.Nodes[1]
	nb := g.AddParam("b2", graph.NewTensor(graph.Float32, []int{6}))
	g.ReplaceUses(b, nb)
	if add.Inputs[1] != nb {
		t.Errorf("Add still reads %v", add.Inputs[1])
	}
	lo := split.Outputs[0]
	other := g.Op("Neg", nil, x)
	g.ReplaceUses(lo, other)
	if g.Outputs[0] != other || g.Outputs[1] != split.Outputs[1] {
		t.Errorf("outputs %v", g.Outputs)
	}
	for _, n := range g.Nodes {
		for _, in := range n.Inputs {
			if in == b {
				t.Errorf("%s still reads b", n.Op)
			}
		}
	}
}

func TestCloneIsDeepAndIndependent(t *testing.T) {
	g, x, w, _, split := small()
	before := g.String()
	c, vm, nm := g.CloneMapped()
	if c.String() != before {
		t.Fatalf("clone prints\n%s\noriginal\n%s", c, before)
	}
	if err := c.Verify(); err != nil {
		t.Fatal(err)
	}
	cx, cw := vm[x], vm[w]
	if cx == nil || cx == x || c.Inputs[0] != cx || cw == w || c.Params[0] != cw {
		t.Fatal("the value map does not lead to the clone's values")
	}
	if cw.Const != w.Const || !cw.Param {
		t.Error("a constant's data is not shared, or Param is lost")
	}
	cs := nm[split]
	if cs == nil || cs == split || c.Nodes[3] != cs || cs.Outputs[0].Def != cs || vm[split.Outputs[0]] != cs.Outputs[0] {
		t.Fatal("the node map does not lead to the clone's nodes")
	}
	for i, n := range c.Nodes {
		for j, in := range n.Inputs {
			if in == g.Nodes[i].Inputs[j] {
				t.Fatalf("clone node %d shares input %d with the original", i, j)
			}
		}
	}
	// change everything in the clone: the original is untouched
	cx.Shape[0] = graph.Dim{N: 7}
	cx.Name = "renamed"
	cs.Attrs["axis"] = int64(0)
	cs.Inputs[0] = cx
	c.Nodes[0].Op = "Gemm"
	c.Nodes = c.Nodes[:2]
	c.Outputs[0] = cx
	c.Inputs = append(c.Inputs, c.NewValue("z", graph.Float32, nil))
	if g.String() != before || x.Shape[0].Sym != "batch" || split.Attrs.Int("axis", -1) != 1 {
		t.Fatalf("changing the clone changed the original:\n%s", g)
	}
	// names taken in the original are taken in the clone, and new names in
	// one are free in the other
	if n := c.UniqueName("x"); n == "x" {
		t.Error("the clone reuses a name of the original")
	}
	if n := g.UniqueName("z"); n != "z" {
		t.Errorf("a name taken in the clone is taken in the original: %q", n)
	}
	if g.Clone().String() != g.String() {
		t.Error("Clone differs from the original")
	}
}

func TestParamToInput(t *testing.T) {
	g, _, w, b, _ := small()
	data := w.Const
	if got := g.ParamToInput(w); got != data {
		t.Fatal("ParamToInput does not return the weight's data")
	}
	if w.IsConst() || w.Param || len(g.Params) != 1 || g.Params[0] != b || g.Inputs[len(g.Inputs)-1] != w {
		t.Fatalf("after ParamToInput: params %v inputs %v", g.Params, g.Inputs)
	}
	if err := g.Verify(); err != nil {
		t.Fatal(err)
	}
}

func TestAttrs(t *testing.T) {
	a := graph.Attrs{"i": int64(3), "f": float32(0.5), "s": "tanh", "is": []int64{1, 2}}
	if a.Int("i", 0) != 3 || a.Int("f", 7) != 7 || a.Int("none", -1) != -1 {
		t.Error("Int")
	}
	if a.Float("f", 0) != 0.5 || a.Float("i", 2) != 2 {
		t.Error("Float")
	}
	if a.Str("s", "") != "tanh" || a.Str("i", "d") != "d" {
		t.Error("Str")
	}
	if v, ok := a.Ints("is"); !ok || !reflect.DeepEqual(v, []int64{1, 2}) {
		t.Error("Ints")
	}
	if _, ok := a.Ints("i"); ok {
		t.Error("Ints of an int")
	}
	if !a.Has("s") || a.Has("x") {
		t.Error("Has")
	}
	if got := a.String(); got != "{f=0.5 i=3 is=[1 2] s=tanh}" {
		t.Errorf("String() = %q", got)
	}
	c := a.Clone()
	c["i"] = int64(4)
	delete(c, "s")
	if a.Int("i", 0) != 3 || !a.Has("s") {
		t.Error("changing a clone changed the original")
	}
	if n := graph.Attrs(nil).Clone(); n == nil {
		t.Error("the clone of nil attributes is not writable")
	}
}

func TestPrinter(t *testing.T) {
	g := graph.New()
	x := g.AddInput("x", graph.Float32, graph.Shape{{N: -1, Sym: "batch"}, {N: 3}})
	s := g.AddInput("s", graph.Int64, nil)
	n := g.AddNode("Clip", "/blocks.0/clip", []*graph.Value{x, nil, g.Const("hi", graph.ScalarF32(1))}, nil, "y")
	m := g.AddNode("Split", "", []*graph.Value{n.Outputs[0]}, graph.Attrs{"axis": int64(1), "num_outputs": int64(2)}, "a", "b")
	m.Outputs[0].DType, m.Outputs[0].Shape = graph.Float32, graph.StaticShape(2, 1)
	g.Outputs = []*graph.Value{m.Outputs[1], s}
	want := "graph(%x:float32[batch,3], %s:int64[?])\n" +
		"  %y:invalid[?] = Clip(%x, _, %hi)  # /blocks.0/clip\n" +
		"  %a:float32[2,1], %b:invalid[?] = Split(%y) {axis=1 num_outputs=2}\n" +
		"  return %b, %s\n"
	if got := g.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}

func TestTensor(t *testing.T) {
	if graph.Numel(nil) != 1 || graph.Numel([]int{2, 0, 3}) != 0 || graph.Numel([]int{2, 3}) != 6 {
		t.Error("Numel")
	}
	for dt, n := range map[graph.DType]int{graph.Float32: 6, graph.Int64: 6, graph.Bool: 6, graph.Invalid: 0} {
		tt := graph.NewTensor(dt, []int{2, 3})
		if tt.Len() != n || tt.Numel() != 6 || tt.DType != dt {
			t.Errorf("NewTensor(%s): len %d", dt, tt.Len())
		}
	}
	shape := []int{2}
	f := graph.F32(shape, []float32{1.5, -2})
	shape[0] = 9
	if f.Shape[0] != 2 {
		t.Error("F32 keeps the caller's shape slice")
	}
	c := f.Clone()
	c.F[0], c.Shape[0] = 7, 5
	if f.F[0] != 1.5 || f.Shape[0] != 2 {
		t.Error("changing a tensor's clone changed it")
	}
	if got := f.Ints(); !reflect.DeepEqual(got, []int64{1, -2}) {
		t.Errorf("Ints of floats: %v", got)
	}
	bt := &graph.Tensor{DType: graph.Bool, Shape: []int{2}, B: []bool{true, false}}
	if got := bt.Ints(); !reflect.DeepEqual(got, []int64{1, 0}) {
		t.Errorf("Ints of bools: %v", got)
	}
	if got := graph.I64([]int{10}, []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}).String(); got != "int64[10]{0 1 2 3 4 5 6 7 ...}" {
		t.Errorf("String() = %q", got)
	}
	if got := graph.ScalarF32(0.25).String(); got != "float32[]{0.25}" {
		t.Errorf("String() = %q", got)
	}
	if graph.Float32.String() != "float32" || graph.Int64.String() != "int64" || graph.Bool.String() != "bool" || graph.Invalid.String() != "invalid" {
		t.Error("DType names")
	}
}
