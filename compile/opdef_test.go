package compile

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/hyperat/hyperat/graph"
)

// The IR's registry holds exactly the operators compile defines, with
// their arity: the verifier accepts nothing the compiler cannot run.
func TestOpDefs(t *testing.T) {
	for op := range graph.Ops {
		if defs[op] == nil {
			t.Errorf("operator %s is registered with the IR but compile does not define it", op)
		}
	}
	for op, d := range defs {
		if info, ok := graph.Ops[op]; !ok || d.name != op || info != d.arity {
			t.Errorf("definition %q (%s, %+v) is not registered as it is defined (%+v)", op, d.name, d.arity, info)
		}
	}
}

func TestDefine(t *testing.T) {
	for name, d := range map[string]opDef{
		"twice":         {name: "Add", arity: ins(2, 2), infer: inferBinary},
		"no shape rule": {name: "TestOnly", arity: ins(1, 1)},
		"no outputs":    {name: "TestOnly", arity: graph.OpInfo{MinIn: 1, MaxIn: 1}, infer: inferSame},
		"alias of none": {name: "TestOnly", arity: ins(0, 1), infer: inferSame, alias: true},
	} {
		t.Run(name, func(t *testing.T) {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), d.name) {
					t.Errorf("recovered %v, want a panic naming %s", r, d.name)
				}
				if _, ok := defs["TestOnly"]; ok {
					t.Errorf("a refused definition was kept")
				}
			}()
			define(d)
		})
	}
	define(opDef{name: "TestOnly", arity: ins(1, 1), infer: inferSame, kernel: kernelCopy})
	defer delete(defs, "TestOnly")
	defer delete(graph.Ops, "TestOnly")
	if d := defs["TestOnly"]; d == nil || d.name != "TestOnly" || d.grad != nil {
		t.Fatalf("defined %+v", d)
	}
	if info := graph.Ops["TestOnly"]; info != ins(1, 1) {
		t.Fatalf("registered %+v", info)
	}
}

// Differentiating through an operator without a gradient rule fails,
// naming the operator and the node.
func TestMissingGradRule(t *testing.T) {
	// every operator of the importer with a float result has a rule: take
	// one defined here without
	define(opDef{name: "NoGradTest", arity: ins(1, 1), infer: inferSame, kernel: kernelCopy})
	defer delete(defs, "NoGradTest")
	defer delete(graph.Ops, "NoGradTest")
	g := graph.New()
	x := g.AddInput("x", graph.Float32, graph.StaticShape(3))
	s := g.AddNode("NoGradTest", "the_op", []*graph.Value{x}, nil, "s").Outputs[0]
	loss := g.Op("ReduceSum", graph.Attrs{"keepdims": int64(0)}, s)
	g.Outputs = []*graph.Value{loss}
	_, err := Compile(g, Options{Grad: &GradSpec{Loss: loss, Wrt: []*graph.Value{x}}})
	if err == nil || !strings.Contains(err.Error(), "operator NoGradTest") || !strings.Contains(err.Error(), "the_op") ||
		!strings.Contains(err.Error(), "no gradient rule") {
		t.Fatalf("error %v, want one naming NoGradTest and its node", err)
	}
	// without a gradient through it, the same graph compiles
	if _, err := Compile(g, Options{}); err != nil {
		t.Fatal(err)
	}
}

// Alias operators run no step: their output is their input's buffer.
func TestAliasNodesRunNoStep(t *testing.T) {
	g := graph.New()
	x := g.AddInput("x", graph.Float32, graph.StaticShape(2, 3))
	r := g.Op("Reshape", nil, x, g.Const("shape", graph.I64([]int{1}, []int64{6})))
	y := g.Op("Exp", nil, g.Op("Identity", nil, g.Op("Unsqueeze", nil, g.Op("Exp", nil, r), g.Const("axes", graph.I64([]int{1}, []int64{0})))))
	g.Outputs = []*graph.Value{y}
	p, err := Compile(g, Options{Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, s := range p.StepTimes() {
		ops = append(ops, s.Node.Op)
	}
	if got := strings.Join(ops, " "); got != "Exp Exp" {
		t.Errorf("steps %q, want only the two Exps", got)
	}
	in := graph.F32([]int{2, 3}, []float32{0, 1, 2, 3, 4, 5})
	out, err := p.Run(in)
	if err != nil {
		t.Fatal(err)
	}
	if !sameShape(out[0].Shape, []int{1, 6}) {
		t.Errorf("output shape %v", out[0].Shape)
	}
	for i, v := range in.F {
		want := float32(math.Exp(float64(float32(math.Exp(float64(v))))))
		if out[0].F[i] != want {
			t.Errorf("output %d: %g, want %g", i, out[0].F[i], want)
		}
	}
}

// Errors of shape rules, kernel builders and kernels name the node, whether
// the rule names it itself or not; an unnamed node by the value it computes.
func TestErrorsNameTheNode(t *testing.T) {
	define(opDef{name: "TestPanics", arity: ins(1, 1), infer: inferSame,
		kernel: func(n *graph.Node) (Kernel, error) {
			return func(in, out []*graph.Tensor) { panic("index out of range") }, nil
		}})
	define(opDef{name: "TestRefuses", arity: ins(1, 1), infer: inferSame,
		kernel: func(n *graph.Node) (Kernel, error) { return nil, fmt.Errorf("unsupported layout") }})
	define(opDef{name: "TestNoShape", arity: ins(1, 1),
		infer: func(n *graph.Node) error { return fmt.Errorf("bad attribute") }})
	defer func() {
		for _, op := range []string{"TestPanics", "TestRefuses", "TestNoShape"} {
			delete(defs, op)
			delete(graph.Ops, op)
		}
	}()
	for _, c := range []struct{ op, name, want string }{
		{"TestPanics", "boom", `run: node "boom" (TestPanics): index out of range`},
		{"TestPanics", "", `run: node computing "y" (TestPanics): index out of range`},
		{"TestRefuses", "k", `node "k" (TestRefuses): unsupported layout`},
		{"TestNoShape", "s", `node "s" (TestNoShape): bad attribute`},
	} {
		g := graph.New()
		x := g.AddInput("x", graph.Float32, graph.StaticShape(2))
		y := g.AddNode(c.op, c.name, []*graph.Value{op(g, "Exp", nil, x)}, nil, "y").Outputs[0]
		g.Outputs = []*graph.Value{y}
		p, err := Compile(g, Options{Verify: true})
		if err == nil {
			_, err = p.Run(graph.NewTensor(graph.Float32, []int{2}))
		}
		if err == nil || err.Error() != c.want {
			t.Errorf("%s %q: error %v, want %q", c.op, c.name, err, c.want)
		}
	}
}
