package graph_test

import (
	"strings"
	"testing"

	"github.com/hyperat/hyperat/graph"
)

func TestVerifyAcceptsWellFormedGraphs(t *testing.T) {
	g, x, _, _, _ := small()
	// variadic inputs, an omitted optional input, a constant output
	cat := g.Op("Concat", graph.Attrs{"axis": int64(1)}, x, x, x, x, x)
	clip := g.AddNode("Clip", "", []*graph.Value{cat, nil, g.Const("hi", graph.ScalarF32(1))}, nil, "clip")
	g.Outputs = append(g.Outputs, clip.Outputs[0], g.Const("k", graph.ScalarF32(3)))
	// Split has as many outputs as it likes
	g.AddNode("Split", "", []*graph.Value{x}, graph.Attrs{"num_outputs": int64(4)}, "p", "q", "r", "s")
	if err := g.Verify(); err != nil {
		t.Fatal(err)
	}
	if err := graph.New().Verify(); err != nil {
		t.Fatalf("empty graph: %v", err)
	}
}

// Each case breaks one rule; Verify must say which.
func TestVerifyRejects(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(g *graph.Graph, x *graph.Value, split *graph.Node)
		want   string
	}{
		{"unknown operator", func(g *graph.Graph, x *graph.Value, _ *graph.Node) {
			g.Nodes[2].Op = "Frobnicate"
		}, `unknown operator "Frobnicate"`},
		{"too few inputs", func(g *graph.Graph, x *graph.Value, _ *graph.Node) {
			g.Nodes[1].Inputs = g.Nodes[1].Inputs[:1] // Add of one value
		}, "1 inputs, want 2"},
		{"required input omitted", func(g *graph.Graph, x *graph.Value, _ *graph.Node) {
			g.Nodes[1].Inputs[1] = nil // Add of a value and nothing
		}, "input 1 is required"},
		{"too many inputs", func(g *graph.Graph, x *graph.Value, _ *graph.Node) {
			g.Nodes[2].Inputs = append(g.Nodes[2].Inputs, x) // Relu of two values
		}, "2 inputs, want 1"},
		{"too many outputs", func(g *graph.Graph, x *graph.Value, _ *graph.Node) {
			n := g.Nodes[2]
			extra := g.NewValue("extra", graph.Float32, nil)
			extra.Def = n
			n.Outputs = append(n.Outputs, extra)
		}, "2 outputs, want 1"},
		{"no outputs", func(g *graph.Graph, x *graph.Value, split *graph.Node) {
			split.Outputs = nil
			g.Outputs = g.Outputs[:1]
		}, "0 outputs, want 1 or more"},
		{"used before defined", func(g *graph.Graph, x *graph.Value, _ *graph.Node) {
			g.Nodes[0], g.Nodes[1] = g.Nodes[1], g.Nodes[0]
		}, "is used before it is defined"},
		{"reads a value of no node", func(g *graph.Graph, x *graph.Value, _ *graph.Node) {
			g.Nodes[2].Inputs[0] = g.NewValue("stray", graph.Float32, nil)
		}, "input 0 (stray) is used before it is defined"},
		{"defined twice", func(g *graph.Graph, x *graph.Value, _ *graph.Node) {
			n := g.Nodes[2]
			g.Nodes = append(g.Nodes, &graph.Node{Op: "Relu", Name: "again", Inputs: n.Inputs, Outputs: n.Outputs})
		}, "defined twice"},
		{"a node output is a graph input", func(g *graph.Graph, x *graph.Value, _ *graph.Node) {
			n := g.Nodes[2]
			n.Outputs[0].Def = nil
			g.Inputs = append(g.Inputs, n.Outputs[0])
		}, "defined twice"},
		{"output does not point back", func(g *graph.Graph, x *graph.Value, _ *graph.Node) {
			g.Nodes[2].Outputs[0].Def = g.Nodes[1]
		}, "does not point back"},
		{"input is a constant", func(g *graph.Graph, x *graph.Value, _ *graph.Node) {
			x.Const = graph.NewTensor(graph.Float32, []int{1, 4})
		}, "graph input x is also a constant"},
		{"input is a node output", func(g *graph.Graph, x *graph.Value, _ *graph.Node) {
			g.Inputs = append(g.Inputs, g.Nodes[0].Outputs[0])
		}, "is also a constant or a node output"},
		{"dangling output", func(g *graph.Graph, x *graph.Value, split *graph.Node) {
			g.Nodes = g.Nodes[:3] // drop the Split
		}, "graph output lo is never defined"},
		{"nil output", func(g *graph.Graph, x *graph.Value, _ *graph.Node) {
			g.Outputs = append(g.Outputs, nil)
		}, "graph output 2 is nil"},
		{"nil node output", func(g *graph.Graph, x *graph.Value, split *graph.Node) {
			split.Outputs[1] = nil
		}, "output 1 is nil"},
		{"two values share a name", func(g *graph.Graph, x *graph.Value, _ *graph.Node) {
			g.Nodes[2].Outputs[0].Name = "x"
		}, `two values are named "x"`},
		{"a constant shares a graph input's name", func(g *graph.Graph, x *graph.Value, split *graph.Node) {
			split.Inputs[1].Name = "x"
		}, `two values are named "x"`},
		{"a parameter shares an output's name", func(g *graph.Graph, x *graph.Value, split *graph.Node) {
			g.Params[0].Name = "hi"
		}, `two values are named "hi"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g, x, _, _, split := small()
			if err := g.Verify(); err != nil {
				t.Fatalf("before breaking: %v", err)
			}
			c.mutate(g, x, split)
			err := g.Verify()
			if err == nil {
				t.Fatalf("Verify accepts the graph:\n%s", g)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not say %q", err, c.want)
			}
		})
	}
}

// The registry refuses a name registered twice and an arity no node can have.
func TestDefineOp(t *testing.T) {
	for name, c := range map[string]struct {
		op   string
		info graph.OpInfo
	}{
		"twice":             {"Add", graph.OpInfo{MinIn: 2, MaxIn: 2, MinOut: 1, MaxOut: 1}},
		"max below min":     {"TestOp", graph.OpInfo{MinIn: 2, MaxIn: 1, MinOut: 1, MaxOut: 1}},
		"no outputs":        {"TestOp", graph.OpInfo{MinIn: 1, MaxIn: 1}},
		"negative inputs":   {"TestOp", graph.OpInfo{MinIn: -1, MaxIn: 1, MinOut: 1, MaxOut: 1}},
		"outputs max < min": {"TestOp", graph.OpInfo{MinIn: 1, MaxIn: 1, MinOut: 2, MaxOut: 1}},
		"no name":           {"", graph.OpInfo{MinIn: 1, MaxIn: 1, MinOut: 1, MaxOut: 1}},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if r := recover(); r == nil {
					t.Errorf("DefineOp(%q, %+v) accepted", c.op, c.info)
				}
				delete(graph.Ops, "TestOp")
			}()
			graph.DefineOp(c.op, c.info)
		})
	}
	graph.DefineOp("TestOp", graph.OpInfo{MinIn: 1, MaxIn: -1, MinOut: 1, MaxOut: -1})
	defer delete(graph.Ops, "TestOp")
	g := graph.New()
	x := g.AddInput("x", graph.Float32, graph.StaticShape(2))
	n := g.AddNode("TestOp", "t", []*graph.Value{x, x, x}, nil, "a", "b")
	g.Outputs = n.Outputs
	if err := g.Verify(); err != nil {
		t.Fatal(err)
	}
}

// Without the registry (a program that does not link compile), Verify
// says why it knows no operator.
func TestVerifyWithoutRegistry(t *testing.T) {
	g, _, _, _, _ := small()
	saved := graph.Ops
	graph.Ops = map[string]graph.OpInfo{}
	defer func() { graph.Ops = saved }()
	err := g.Verify()
	if err == nil || !strings.Contains(err.Error(), "no operator is registered") {
		t.Fatalf("error %v, want one saying no operator is registered", err)
	}
}
