package compile

import (
	"slices"

	"github.com/hyperat/hyperat/graph"
)

// fuseLowRank computes a low-rank product added to a product of the same
// left operand at the shape of the weight (a LoRA branch beside its layer,
// in the forward and in the gradient of the layer's input):
//
//	X·op(W) + (X·op(T))·op(V)  ->  X·(op(W) + op(T)·op(V))
//
// with W, T and V matrices and X holding more rows than op(W): op(T)·op(V)
// costs k·r·n instead of rows·r·n, and the sum is one product instead of two
// and an addition. X·op(T) stays where something else reads it (the
// factors' gradients do). The merged weight rounds differently from the two
// products, the same way every run.
func fuseLowRank(c *compilation) error {
	pinned := map[*graph.Value]bool{}
	for _, o := range append(append([]*graph.Value{}, c.g.Outputs...), c.extra...) {
		pinned[o] = true
	}
	uses := c.g.Consumers()
	for _, n := range slices.Clone(c.g.Nodes) {
		if n.Op != "Add" {
			continue
		}
		for side := 0; side < 2; side++ {
			if fuseLowRankAt(c, n, side, uses, pinned) {
				break
			}
		}
	}
	return nil
}

// product is a matrix product alpha op(A)·op(B) (+ beta C for a Gemm).
type product struct {
	n       *graph.Node
	a, b, c *graph.Value
	ta, tb  bool
	alpha   float32
}

// productOf reads v as the result of a plain product (a MatMul without
// views, or a Gemm) whose B is a matrix, through the reshapes after it.
// With uses, every value on the way must have v's path as its only reader
// and none may be pinned (the product then serves this reader alone).
func productOf(v *graph.Value, uses map[*graph.Value][]*graph.Node, pinned map[*graph.Value]bool) (product, bool) {
	for {
		if uses != nil && (len(uses[v]) != 1 || pinned[v]) {
			return product{}, false
		}
		d := v.Def
		if d == nil || !isAlias(d) {
			break
		}
		v = d.Inputs[0]
	}
	n := v.Def
	if n == nil || n.Op != "MatMul" && n.Op != "Gemm" || len(shapeOf(n.Inputs[1])) != 2 {
		return product{}, false
	}
	for _, view := range []string{"viewA", "viewB", "viewC", "shapeA", "shapeB", "shapeC"} {
		if n.Attrs.Has(view) {
			return product{}, false
		}
	}
	p := product{n: n, a: n.Inputs[0], b: n.Inputs[1], ta: n.Attrs.Int("transA", 0) == 1,
		tb: n.Attrs.Int("transB", 0) == 1, alpha: n.Attrs.Float("alpha", 1)}
	if n.Op == "Gemm" {
		p.c = n.In(2)
	}
	return p, true
}

// aliasRoot is the value whose data v shares through reshapes.
func aliasRoot(v *graph.Value) *graph.Value {
	for v.Def != nil && isAlias(v.Def) {
		v = v.Def.Inputs[0]
	}
	return v
}

// opShape is the shape of a matrix as a product reads it.
func opShape(v *graph.Value, t bool) []int {
	s := shapeOf(v)
	if t {
		return []int{s[1], s[0]}
	}
	return s
}

func boolAttr(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

// fuseLowRankAt rewrites Add node n when its input side is X·op(W) and the
// other (X·op(T))·op(V), as fuseLowRank says, and reports whether it did.
func fuseLowRankAt(c *compilation, n *graph.Node, side int, uses map[*graph.Value][]*graph.Node, pinned map[*graph.Value]bool) bool {
	main, ok := productOf(n.Inputs[side], uses, pinned)
	if !ok || main.ta || main.alpha == 0 {
		return false
	}
	low, ok := productOf(n.Inputs[1-side], uses, pinned)
	if !ok || low.ta || low.c != nil {
		return false
	}
	u, ok := productOf(low.a, nil, nil)
	if !ok || u.ta || u.c != nil {
		return false
	}
	x, xu := shapeOf(main.a), shapeOf(u.a)
	out := shapeOf(n.Outputs[0])
	w, t, v := opShape(main.b, main.tb), opShape(u.b, u.tb), opShape(low.b, low.tb)
	k, rows := w[0], graph.Numel(x)/max(w[0], 1)
	if aliasRoot(main.a) != aliasRoot(u.a) || graph.Numel(x) != graph.Numel(xu) || x[len(x)-1] != k || xu[len(xu)-1] != k ||
		t[0] != k || t[1] != v[0] || v[1] != w[1] || rows <= k || graph.Numel(out) != rows*w[1] ||
		!sameShape(shapeOf(n.Inputs[0]), out) || !sameShape(shapeOf(n.Inputs[1]), out) {
		return false
	}
	// the weight's update in its stored layout: op(T)·op(V), or its
	// transpose op(V)ᵀ·op(T)ᵀ when the product reads W transposed
	s := low.alpha * u.alpha / main.alpha
	var m *graph.Value
	if main.tb {
		m = insertBefore(c, n, "MatMul", graph.Attrs{"transA": boolAttr(!low.tb), "transB": boolAttr(!u.tb), "alpha": s}, low.b, u.b)
	} else {
		m = insertBefore(c, n, "MatMul", graph.Attrs{"transA": boolAttr(u.tb), "transB": boolAttr(low.tb), "alpha": s}, u.b, low.b)
	}
	ins := []*graph.Value{main.a, insertBefore(c, n, "Add", nil, main.b, m)}
	if main.c != nil {
		ins = append(ins, main.c)
	}
	if sameShape(shapeOf(main.n.Outputs[0]), out) {
		n.Op, n.Inputs, n.Attrs = main.n.Op, ins, main.n.Attrs.Clone()
		return true
	}
	p := insertBefore(c, n, main.n.Op, main.n.Attrs.Clone(), ins...)
	n.Op, n.Attrs = "Reshape", graph.Attrs{"allowzero": int64(1)}
	n.Inputs = []*graph.Value{p, c.g.Const("shape", graph.I64([]int{len(out)}, i64s(out)))}
	return true
}

// insertBefore adds a node right before node at, with shapes inferred.
func insertBefore(c *compilation, at *graph.Node, op string, attrs graph.Attrs, ins ...*graph.Value) *graph.Value {
	n := c.g.AddNode(op, at.Name, ins, attrs, op)
	c.g.Nodes = c.g.Nodes[:len(c.g.Nodes)-1]
	pos := slices.Index(c.g.Nodes, at)
	c.g.Nodes = slices.Insert(c.g.Nodes, pos, n)
	if err := defs[op].infer(n); err != nil {
		panic("compile: fuse-lowrank: " + err.Error()) // shapes were checked above
	}
	return n.Outputs[0]
}
