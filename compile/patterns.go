package compile

import (
	"math"

	"github.com/hyperat/hyperat/graph"
)

// recognize replaces decomposed subgraphs by the operators they compute, so
// that both the forward and the gradient use one fused kernel:
//
//	(x - mean(x)) / sqrt(mean((x - mean(x))^2) + eps) * g + b  ->  LayerNormalization(x, g, b)
//	x * 0.5 * (1 + erf(x / sqrt(2)))                           ->  Gelu(x)
//
// Only the final value's readers are redirected; the old nodes become dead
// and deadCode removes them, so intermediate values read elsewhere stay right.
func recognize(c *compilation) error {
	uses := c.g.Consumers()
	for _, n := range append([]*graph.Node{}, c.g.Nodes...) {
		switch n.Op {
		case "Div":
			matchLayerNorm(c, n, uses)
		case "Erf":
			matchGelu(c, n, uses)
		}
	}
	return deadCode(c)
}

// constScalar returns the value of a one-element float constant (not a variable).
func (c *compilation) constScalar(v *graph.Value) (float64, bool) {
	if v == nil || !v.IsConst() || c.isVar[v] || v.Const.DType != graph.Float32 || v.Const.Numel() != 1 {
		return 0, false
	}
	return float64(v.Const.F[0]), true
}

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-6*math.Max(1, math.Abs(b)) }

func def(v *graph.Value, op string) *graph.Node {
	if v != nil && v.Def != nil && v.Def.Op == op {
		return v.Def
	}
	return nil
}

// lastAxisMean reports whether n is ReduceMean over exactly the last axis with keepdims.
func lastAxisMean(n *graph.Node) bool {
	if n == nil || n.Attrs.Int("keepdims", 1) != 1 {
		return false
	}
	axes, ok, err := constInts(n, 1)
	if err != nil || !ok || len(axes) != 1 {
		return false
	}
	r := len(n.Inputs[0].StaticShape())
	return axes[0] == -1 || axes[0] == int64(r-1)
}

// only returns the single reader of v, or nil.
func only(uses map[*graph.Value][]*graph.Node, v *graph.Value, op string) *graph.Node {
	if u := uses[v]; len(u) == 1 && u[0].Op == op {
		return u[0]
	}
	return nil
}

func matchLayerNorm(c *compilation, div *graph.Node, uses map[*graph.Value][]*graph.Node) {
	sub := def(div.Inputs[0], "Sub")
	sqrt := def(div.Inputs[1], "Sqrt")
	if sub == nil || sqrt == nil {
		return
	}
	mean := def(sub.Inputs[1], "ReduceMean")
	if !lastAxisMean(mean) || mean.Inputs[0] != sub.Inputs[0] {
		return
	}
	x := sub.Inputs[0]
	add := def(sqrt.Inputs[0], "Add")
	if add == nil {
		return
	}
	varMean, epsV := def(add.Inputs[0], "ReduceMean"), add.Inputs[1]
	if varMean == nil {
		varMean, epsV = def(add.Inputs[1], "ReduceMean"), add.Inputs[0]
	}
	eps, ok := c.constScalar(epsV)
	if !lastAxisMean(varMean) || !ok {
		return
	}
	sq := varMean.Inputs[0]
	if p := def(sq, "Pow"); p != nil {
		if e, ok := c.constScalar(p.Inputs[1]); !ok || e != 2 || p.Inputs[0] != sub.Outputs[0] {
			return
		}
	} else if m := def(sq, "Mul"); m != nil {
		if m.Inputs[0] != sub.Outputs[0] || m.Inputs[1] != sub.Outputs[0] {
			return
		}
	} else {
		return
	}
	d := x.StaticShape()[len(x.StaticShape())-1]
	isVec := func(v *graph.Value) bool {
		s := v.StaticShape()
		return v.DType == graph.Float32 && graph.Numel(s) == d && len(s) >= 1 && s[len(s)-1] == d
	}
	out := div.Outputs[0]
	var scale, bias *graph.Value
	if mul := only(uses, out, "Mul"); mul != nil {
		other := mul.Inputs[1]
		if other == out {
			other = mul.Inputs[0]
		}
		if isVec(other) {
			scale, out = other, mul.Outputs[0]
			if ad := only(uses, out, "Add"); ad != nil {
				o := ad.Inputs[1]
				if o == out {
					o = ad.Inputs[0]
				}
				if isVec(o) {
					bias, out = o, ad.Outputs[0]
				}
			}
		}
	}
	if scale == nil {
		ones := graph.NewTensor(graph.Float32, []int{d})
		for i := range ones.F {
			ones.F[i] = 1
		}
		scale = c.g.Const("ln_scale", ones)
	}
	flat := func(v *graph.Value) *graph.Value {
		if len(v.StaticShape()) == 1 {
			return v
		}
		r := insertAfter(c, v, "Reshape", graph.Attrs{"allowzero": int64(0)}, v, c.g.Const("shape", graph.I64([]int{1}, []int64{int64(d)})))
		return r
	}
	scale = flat(scale)
	ins := []*graph.Value{x, scale}
	if bias != nil {
		ins = append(ins, flat(bias))
	}
	ln := replaceWith(c, out, "LayerNormalization", graph.Attrs{"axis": int64(-1), "epsilon": float32(eps)}, ins...)
	_ = ln
}

func matchGelu(c *compilation, erf *graph.Node, uses map[*graph.Value][]*graph.Node) {
	var x *graph.Value
	if d := def(erf.Inputs[0], "Div"); d != nil {
		if v, ok := c.constScalar(d.Inputs[1]); ok && near(v, math.Sqrt2) {
			x = d.Inputs[0]
		}
	} else if m := def(erf.Inputs[0], "Mul"); m != nil {
		if v, ok := c.constScalar(m.Inputs[1]); ok && near(v, 1/math.Sqrt2) {
			x = m.Inputs[0]
		}
	}
	if x == nil {
		return
	}
	add := only(uses, erf.Outputs[0], "Add")
	if add == nil {
		return
	}
	one := add.Inputs[1]
	if one == erf.Outputs[0] {
		one = add.Inputs[0]
	}
	if v, ok := c.constScalar(one); !ok || v != 1 {
		return
	}
	other := func(m *graph.Node, v *graph.Value) *graph.Value {
		if m.Inputs[0] == v {
			return m.Inputs[1]
		}
		return m.Inputs[0]
	}
	isHalf := func(v *graph.Value) bool { h, ok := c.constScalar(v); return ok && h == 0.5 }
	isHalfX := func(v *graph.Value) bool {
		m := def(v, "Mul")
		return m != nil && ((m.Inputs[0] == x && isHalf(m.Inputs[1])) || (m.Inputs[1] == x && isHalf(m.Inputs[0])))
	}
	m1 := only(uses, add.Outputs[0], "Mul")
	if m1 == nil {
		return
	}
	o1 := other(m1, add.Outputs[0])
	var out *graph.Value
	switch {
	case isHalfX(o1): // (x * 0.5) * (1 + erf)
		out = m1.Outputs[0]
	case o1 == x || isHalf(o1): // then times the remaining factor
		m2 := only(uses, m1.Outputs[0], "Mul")
		if m2 == nil {
			return
		}
		o2 := other(m2, m1.Outputs[0])
		if (o1 == x && isHalf(o2)) || (isHalf(o1) && o2 == x) {
			out = m2.Outputs[0]
		}
	}
	if out == nil {
		return
	}
	replaceWith(c, out, "Gelu", graph.Attrs{"approximate": "none"}, x)
}

// replaceWith adds a node computing the same as old from ins, placed where
// old's producer is, and redirects old's readers to it.
func replaceWith(c *compilation, old *graph.Value, op string, attrs graph.Attrs, ins ...*graph.Value) *graph.Value {
	v := insertAfter(c, old, op, attrs, ins...)
	for _, n := range c.g.Nodes {
		if n == v.Def {
			continue
		}
		for i, in := range n.Inputs {
			if in == old {
				n.Inputs[i] = v
			}
		}
	}
	for i, o := range c.g.Outputs {
		if o == old {
			c.g.Outputs[i] = v
		}
	}
	for i, o := range c.extra {
		if o == old {
			c.extra[i] = v
		}
	}
	for k, o := range c.vmap {
		if o == old {
			c.vmap[k] = v
		}
	}
	return v
}

// insertAfter adds a node right after the producer of at (its inputs are all
// defined by then), with shapes inferred.
func insertAfter(c *compilation, at *graph.Value, op string, attrs graph.Attrs, ins ...*graph.Value) *graph.Value {
	n := c.g.AddNode(op, "", ins, attrs, op)
	c.g.Nodes = c.g.Nodes[:len(c.g.Nodes)-1]
	pos := 0
	for i, m := range c.g.Nodes {
		if m == at.Def {
			pos = i + 1
		}
		for _, in := range ins {
			if in != nil && in.Def == m && i+1 > pos {
				pos = i + 1
			}
		}
	}
	c.g.Nodes = append(c.g.Nodes[:pos], append([]*graph.Node{n}, c.g.Nodes[pos:]...)...)
	defs[op].infer(n)
	return n.Outputs[0]
}

// fuseTransposes lets a MatMul read an operand that a Transpose of its last
// two dims produced directly, with the internal transA/transB attribute:
// the matrix multiply reads transposed operands as cheaply as plain ones,
// and the Transpose (made by attention's K^T and by most gradient rules)
// is then dead. Vector operands (rank 1) are left alone.
func fuseTransposes(c *compilation) error {
	for _, n := range c.g.Nodes {
		if n.Op != "MatMul" {
			continue
		}
		for i, attr := range []string{"transA", "transB"} {
			// through chains of transposes: a transposed read of a
			// transpose reads the original plainly
			for t := def(n.Inputs[i], "Transpose"); t != nil && swapsLastTwo(t); t = def(n.Inputs[i], "Transpose") {
				if n.Attrs == nil {
					n.Attrs = graph.Attrs{}
				}
				n.Inputs[i] = t.Inputs[0]
				n.Attrs[attr] = 1 - n.Attrs.Int(attr, 0)
			}
		}
	}
	// (A B)^T = B^T A^T: a product whose only reader swaps its last two
	// dims is computed transposed in the first place. The Transpose node
	// becomes that product; the original is left to dead-code removal.
	pinned := map[*graph.Value]bool{}
	for _, o := range append(append([]*graph.Value{}, c.g.Outputs...), c.extra...) {
		pinned[o] = true
	}
	uses := c.g.Consumers()
	for _, t := range c.g.Nodes {
		if t.Op != "Transpose" || !swapsLastTwo(t) {
			continue
		}
		m := def(t.Inputs[0], "MatMul")
		y := t.Inputs[0]
		if m == nil || len(uses[y]) != 1 || pinned[y] || len(y.StaticShape()) < 2 ||
			len(shapeOf(m.Inputs[0])) < 2 || len(shapeOf(m.Inputs[1])) < 2 {
			continue
		}
		ta, tb := m.Attrs.Int("transA", 0), m.Attrs.Int("transB", 0)
		t.Op = "MatMul"
		t.Inputs = []*graph.Value{m.Inputs[1], m.Inputs[0]}
		t.Attrs = graph.Attrs{"transA": 1 - tb, "transB": 1 - ta}
	}
	return nil
}

// fuseScales folds a multiplication by a scalar constant into the products
// beside it (attention's 1/sqrt(d), forward and backward): into the alpha
// of a product whose only reader is the multiplication (the Mul node becomes
// that product, bit for bit the same: alpha scales the finished sum), and
// into the alpha of every product reading a scaled value (rounded
// differently: s (g K) instead of (s g) K; the multiplication stays for its
// other readers, Swin's scaled q read by the gradient of k).
func fuseScales(c *compilation) error {
	pinned := map[*graph.Value]bool{}
	for _, o := range append(append([]*graph.Value{}, c.g.Outputs...), c.extra...) {
		pinned[o] = true
	}
	uses := c.g.Consumers()
	for _, n := range c.g.Nodes {
		if n.Op != "Mul" {
			continue
		}
		x, s, ok := scaledBy(n)
		y := n.Outputs[0]
		if !ok || !sameShape(x.StaticShape(), y.StaticShape()) {
			continue
		}
		if m := def(x, "MatMul"); m != nil && len(uses[x]) == 1 && !pinned[x] {
			n.Op = "MatMul"
			n.Inputs = append([]*graph.Value{}, m.Inputs...)
			n.Attrs = m.Attrs.Clone()
			if n.Attrs == nil {
				n.Attrs = graph.Attrs{}
			}
			n.Attrs["alpha"] = m.Attrs.Float("alpha", 1) * s
			continue
		}
		if pinned[y] || len(uses[y]) == 0 {
			continue
		}
		// Every product reading y reads x with the scale as alpha; the Mul
		// stays for any other reader (a gradient rule's), so that a forward
		// computes the same products, bit for bit, whether or not a
		// gradient is compiled with it (dead-code removal drops it otherwise).
		for _, u := range uses[y] {
			if u.Op != "MatMul" || (u.Inputs[0] == y && u.Inputs[1] == y) {
				continue
			}
			for i, in := range u.Inputs {
				if in == y {
					u.Inputs[i] = x
				}
			}
			if u.Attrs == nil {
				u.Attrs = graph.Attrs{}
			}
			u.Attrs["alpha"] = u.Attrs.Float("alpha", 1) * s
		}
	}
	return nil
}

// fuseBias turns a product followed by the addition of a bias row (a linear
// layer as exporters write it: MatMul, then Add of a [n] vector) into one
// MatMulBias node, whose kernel adds the bias as the product's first block
// is stored: one pass over the output fewer. The bias then enters the sum
// before the products' partial sums do, which rounds differently (by a unit
// in the last place or so), the same way every run.
func fuseBias(c *compilation) error {
	pinned := map[*graph.Value]bool{}
	for _, o := range append(append([]*graph.Value{}, c.g.Outputs...), c.extra...) {
		pinned[o] = true
	}
	uses := c.g.Consumers()
	for _, n := range c.g.Nodes {
		if n.Op != "Add" {
			continue
		}
		for i, y := range n.Inputs {
			bias := n.Inputs[1-i]
			m := def(y, "MatMul")
			if m == nil || bias == nil || len(uses[y]) != 1 || pinned[y] || bias.DType != graph.Float32 {
				continue
			}
			ys, bs := y.StaticShape(), bias.StaticShape()
			if len(ys) < 2 || len(shapeOf(m.Inputs[1])) < 2 || len(shapeOf(m.Inputs[0])) < 2 ||
				!sameShape(ys, n.Outputs[0].StaticShape()) || !isRow(bs, ys[len(ys)-1]) {
				continue
			}
			n.Op = "MatMulBias"
			n.Inputs = []*graph.Value{m.Inputs[0], m.Inputs[1], bias}
			n.Attrs = m.Attrs.Clone()
			break
		}
	}
	return nil
}

// isRow reports whether shape s holds one row of n elements ([n], [1, n]...).
func isRow(s []int, n int) bool {
	if len(s) == 0 || s[len(s)-1] != n {
		return false
	}
	for _, d := range s[:len(s)-1] {
		if d != 1 {
			return false
		}
	}
	return true
}

// scaledBy reports whether Mul node n multiplies a float value x by a
// one-element float constant s.
func scaledBy(n *graph.Node) (x *graph.Value, s float32, ok bool) {
	for i, c := range n.Inputs {
		other := n.Inputs[1-i]
		if c == nil || other == nil || !c.IsConst() || c.DType != graph.Float32 || other.DType != graph.Float32 {
			continue
		}
		if len(c.Const.F) == 1 && other.Def != nil {
			return other, c.Const.F[0], true
		}
	}
	return nil, 0, false
}

// swapsLastTwo reports whether a Transpose exchanges only its last two dims.
func swapsLastTwo(t *graph.Node) bool {
	r := len(t.Inputs[0].StaticShape())
	if r < 2 {
		return false
	}
	p, err := perm(t, r)
	if err != nil {
		return false
	}
	for i := 0; i < r-2; i++ {
		if p[i] != i {
			return false
		}
	}
	return p[r-2] == r-1 && p[r-1] == r-2
}
