// Package nn builds low-rank adapters (LoRA branches) on the linear layers of
// a graph. It only adds generic operators, so compile infers their shapes and
// differentiates them like any other node.
package nn

import (
	"github.com/hyperat/hyperat/graph"
)

func scalar(g *graph.Graph, v float32) *graph.Value { return g.Const("c", graph.ScalarF32(v)) }

// LoRA adds a low-rank branch to the linear layer whose matrix product is node
// (MatMul with weight [in, out], or Gemm with any transB): the product's output
// y becomes y + scale * (x A^T) B^T, with A [r, in] and B [out, r] given as
// values (graph inputs or variables), in PEFT's layout. It returns the value
// that now carries the adapted output.
func LoRA(g *graph.Graph, node *graph.Node, a, b *graph.Value, scale float32) *graph.Value {
	pos := -1
	for i, n := range g.Nodes {
		if n == node {
			pos = i
		}
	}
	if pos < 0 {
		panic("nn.LoRA: node is not in the graph")
	}
	before := len(g.Nodes)
	x := node.Inputs[0]
	if node.Op == "Gemm" && node.Attrs.Int("transA", 0) == 1 {
		x = g.Op("Transpose", graph.Attrs{"perm": []int64{1, 0}}, x)
	}
	at := g.Op("Transpose", graph.Attrs{"perm": []int64{1, 0}}, a)
	bt := g.Op("Transpose", graph.Attrs{"perm": []int64{1, 0}}, b)
	low := g.Op("MatMul", nil, g.Op("MatMul", nil, x, at), bt)
	if scale != 1 {
		low = g.Op("Mul", nil, low, scalar(g, scale))
	}
	y := node.Outputs[0]
	add := g.AddNode("Add", node.Name+"/lora", []*graph.Value{y, low}, nil, y.Name+"_lora")
	sum := add.Outputs[0]
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
	// The branch reads only values defined up to node, so it goes right after it.
	branch := append([]*graph.Node{}, g.Nodes[before:]...)
	rest := append([]*graph.Node{}, g.Nodes[pos+1:before]...)
	g.Nodes = append(append(g.Nodes[:pos+1], branch...), rest...)
	return sum
}
