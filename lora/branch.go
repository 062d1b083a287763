package lora

import (
	"slices"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/layers"
)

// Insert adds a LoRA branch at layer l of g, right after its product:
//
//	y = x W0 + scale (x A^T) B^T (+ b)
//
// with A [r, in] and B [out, r] values of g (graph inputs or variables). The
// branch reads the layer's input x (transposed back when the product reads
// it transposed), so it is one branch for either layout of W0, and the
// product's alpha scales it too: it computes what Merge folds into the
// weight. The scale multiplies B, the smallest operand, so that neither the
// branch nor its gradient pays a pass over the activations for it; and the
// compiler computes a branch beside its product at the weight's shape
// (x W0 + (x A^T) B^T = x (W0 + A^T B^T)), forward and backward. Every
// reader of the product reads the sum instead; Insert returns the sum.
func Insert(g *graph.Graph, l *layers.Linear, a, b *graph.Value, scale float32) *graph.Value {
	y := l.Node.Outputs[0]
	at := slices.Index(g.Nodes, y.Def)
	if at < 0 {
		panic("lora.Insert: the layer is not in the graph")
	}
	before := len(g.Nodes)
	swap := func() graph.Attrs { return graph.Attrs{"perm": []int64{1, 0}} }
	x := l.Input
	if l.TransX {
		x = g.Op("Transpose", swap(), x)
	}
	if s := scale * l.Alpha; s != 1 {
		b = g.Op("Mul", nil, b, g.Const("lora_scale", graph.ScalarF32(s)))
	}
	u := g.Op("MatMul", nil, x, g.Op("Transpose", swap(), a))
	low := g.Op("MatMul", nil, u, g.Op("Transpose", swap(), b))
	sum := g.AddNode("Add", l.Node.Name+"/lora", []*graph.Value{y, low}, nil, y.Name+"_lora").Outputs[0]
	for _, n := range g.Nodes[:before] {
		for i, in := range n.Inputs {
			if in == y {
				n.Inputs[i] = sum
			}
		}
	}
	for i, o := range g.Outputs {
		if o == y {
			g.Outputs[i] = sum
		}
	}
	// the branch reads only values defined before the product, so it goes right after it
	branch := slices.Clone(g.Nodes[before:])
	rest := slices.Clone(g.Nodes[at+1 : before])
	g.Nodes = append(append(g.Nodes[:at+1], branch...), rest...)
	return sum
}
