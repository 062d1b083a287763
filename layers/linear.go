package layers

import (
	"fmt"
	"slices"

	"github.com/hyperat/hyperat/graph"
)

// Layer kinds. Attention inputs are named by the operands they feed: "qkv" when
// one linear feeds all three, "q", "k", "v" when they are apart, "kv" (etc.) for
// other packings. MLP layers are "fc1", "fc2", ... in graph order.
const (
	KindQKV    = "qkv"
	KindQ      = "q"
	KindK      = "k"
	KindV      = "v"
	KindProj   = "proj"
	KindFC1    = "fc1"
	KindFC2    = "fc2"
	KindHead   = "head"
	KindLinear = "linear" // a linear outside the recognized structure
)

// Linear is one linear layer of a graph: Output = Alpha Input·W + Bias.
type Linear struct {
	// Name is the layer's name, recovered from the file where possible
	// ("blocks.3.mlp.fc1"); Structural is set when it was made from the
	// structure instead (timm's scheme). Recognize sets Name and Kind.
	Name       string
	Kind       string
	Structural bool
	// Block is the index of the transformer block, -1 outside blocks (the head).
	Block   int
	In, Out int
	// Weight is the initializer holding W: [in,out], or [out,in] when Transposed
	// (Gemm with transB=1, or a MatMul reading Transpose(W)).
	Weight     *graph.Value
	Transposed bool
	// Reader is the node that reads Weight: Node, or the Transpose between them.
	Reader *graph.Node
	// SharedWeight: other nodes read the weight too. Exporters store identical
	// initializers once (copies of one layer, untrained weights), so writing a
	// changed weight back must give this layer an initializer of its own.
	SharedWeight bool
	// Key names the weight in a tuning result: the initializer, or Reader's
	// copy of it when other nodes read the initializer too.
	Key WeightKey
	// Bias is the constant added to the product (Gemm's C or the following Add), or nil.
	Bias *graph.Value
	// Node is the MatMul or Gemm; BiasNode the Add of the bias, when separate.
	Node, BiasNode *graph.Node
	// Input is the activation x; Output the layer's result (after the bias).
	Input, Output *graph.Value
	// TransX: the product reads x transposed ([in, rows]: Gemm with transA=1).
	// Alpha scales the product (Gemm's alpha; 1 for MatMul).
	TransX bool
	Alpha  float32
}

func (l *Linear) String() string {
	return fmt.Sprintf("%s (%s, %d->%d)", l.Name, l.Kind, l.In, l.Out)
}

// Match reports whether node n is the matrix product of a linear layer,
// y = alpha x W (+ bias), with W a 2-D float initializer, and how it reads W:
//
//	MatMul(x, W)             W [in, out]
//	MatMul(x, Transpose(W))  W [out, in], read through the Transpose
//	Gemm(x, W[, c])          W [in, out], or [out, in] with transB=1; transA=1 reads
//	                         x transposed; c is the bias when it is a constant of
//	                         out elements and beta is 1
//
// A product without a bias of its own takes a following Add(y, b), b a 1-D
// constant of out elements, as its bias. readers maps each value to the
// nodes that read it (g.Consumers()). Match returns nil for any other node.
// Recognition, the LoRA branches and export's unmerged branches all find
// their layers through it.
func Match(g *graph.Graph, readers map[*graph.Value][]*graph.Node, n *graph.Node) *Linear {
	var l *Linear
	switch n.Op {
	case "MatMul":
		l = matmulLinear(n)
	case "Gemm":
		l = gemmLinear(n)
	}
	if l == nil {
		return nil
	}
	l.Block = -1
	l.Node = n
	l.Input = n.In(0)
	l.Output = n.Outputs[0]
	if l.Reader == nil {
		l.Reader = n
	}
	if l.Bias == nil && !(n.Op == "Gemm" && n.In(2) != nil) {
		// a Gemm adding something other than a bias is still linear in x;
		// it keeps no Bias, and no separate bias Add is looked for after it
		biasAdd(g, readers, l)
	}
	l.SharedWeight = len(readers[l.Weight]) > 1 || slices.Contains(g.Outputs, l.Weight)
	l.Key = WeightKey{Init: l.Weight.Name}
	if len(readers[l.Weight]) > 1 {
		l.Key.Reader = l.Reader.Outputs[0].Name
	}
	return l
}

// isWeight reports whether v is a 2-D float initializer.
func isWeight(v *graph.Value) bool {
	return v != nil && v.Param && v.Const != nil && v.Const.DType == graph.Float32 && len(v.Const.Shape) == 2
}

func isActivation(v *graph.Value) bool { return v != nil && !v.IsConst() }

// matmulLinear: MatMul(x, W) with W [in,out], or MatMul(x, Transpose(W)) with W [out,in].
func matmulLinear(n *graph.Node) *Linear {
	x, w := n.In(0), n.In(1)
	if !isActivation(x) || w == nil {
		return nil
	}
	if isWeight(w) {
		return &Linear{Weight: w, In: w.Const.Shape[0], Out: w.Const.Shape[1], Alpha: 1}
	}
	if t := w.Def; t != nil && t.Op == "Transpose" && isWeight(t.In(0)) {
		if perm, ok := t.Attrs.Ints("perm"); !ok || slices.Equal(perm, []int64{1, 0}) {
			wt := t.In(0)
			return &Linear{Weight: wt, Transposed: true, Reader: t, In: wt.Const.Shape[1], Out: wt.Const.Shape[0], Alpha: 1}
		}
	}
	return nil
}

// gemmLinear: Gemm(x, W[, c]); c is the bias when it is a constant of out
// elements and beta is 1.
func gemmLinear(n *graph.Node) *Linear {
	x, w := n.In(0), n.In(1)
	if !isActivation(x) || !isWeight(w) {
		return nil
	}
	l := &Linear{Weight: w, In: w.Const.Shape[0], Out: w.Const.Shape[1],
		TransX: n.Attrs.Int("transA", 0) != 0, Alpha: n.Attrs.Float("alpha", 1)}
	if n.Attrs.Int("transB", 0) != 0 {
		l.Transposed = true
		l.In, l.Out = l.Out, l.In
	}
	if c := n.In(2); c != nil && c.IsConst() && c.Const.DType == graph.Float32 && c.Const.Numel() == l.Out && n.Attrs.Float("beta", 1) == 1 {
		l.Bias = c
	}
	return l
}

// biasAdd takes a following Add of a 1-D constant of out elements as the bias.
func biasAdd(g *graph.Graph, readers map[*graph.Value][]*graph.Node, l *Linear) {
	y := l.Node.Outputs[0]
	cs := readers[y]
	if len(cs) != 1 || cs[0].Op != "Add" || slices.Contains(g.Outputs, y) {
		return
	}
	add := cs[0]
	b := add.In(1)
	if add.In(1) == y {
		b = add.In(0)
	}
	if b == y || !b.IsConst() || b.Const.DType != graph.Float32 || len(b.Const.Shape) != 1 || b.Const.Shape[0] != l.Out {
		return
	}
	l.Bias, l.BiasNode, l.Output = b, add, add.Outputs[0]
}
