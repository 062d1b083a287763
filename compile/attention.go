package compile

import (
	"slices"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/kernels"
)

// Attention as one operator: the fuse-attention pass replaces
// softmax(alpha a b) v (two products, a scale and a softmax over the last
// axis) by one Attention node, whose kernel computes each head's scores,
// softmax and weighted sum while the scores are in cache; its gradient rule
// adds one AttentionGrad node, which does the same for the backward. Both
// read their operands and write their results through views (fuse-view),
// as the products do.

func init() {
	// Attention: (a[..., m, k], b[..., k, n], v[..., n, dv], [bias[..., m, n]]) -> (o[..., m, dv],
	// p[..., m, n]): p = softmax(alpha a b + bias) along the last axis, o = p v; attr alpha;
	// the bias broadcasts over the batch dims and gets no gradient; p, kept for the
	// gradient, is dropped when nothing reads it (project operator, fuse-attention)
	define(opDef{name: "Attention", arity: graph.OpInfo{MinIn: 3, MaxIn: 4, MinOut: 1, MaxOut: 2},
		infer: inferAttention, kernel: kernelAttention, grad: gradAttention, prune: pruneAttention})
	// AttentionGrad: (a, b, v, p, do) -> (da, db, dv) of Attention; attr alpha; with attr
	// into=1, one output that the three gradients are written into through their views
	// (project operator)
	define(opDef{name: "AttentionGrad", arity: graph.OpInfo{MinIn: 5, MaxIn: 5, MinOut: 1, MaxOut: 3},
		infer: inferAttentionGrad, kernel: kernelAttentionGrad})
}

// attnIns and attnGradIns name the inputs that views may replace (the view
// attributes are "view"+name and "shape"+name); "" for one read as it is.
var (
	attnIns      = []string{"A", "B", "V"}
	attnGradIns  = []string{"A", "B", "V", "", "DO"}
	attnGradOuts = []string{"DA", "DB", "DV"}
)

// attnDims are an attention node's sizes, from its operands as it reads
// them.
type attnDims struct {
	batch             []int
	heads             int
	m, n, k, dv       int
	shA, shB, shV     []int
	shO, shP          []int
	inNames, outNames []string
}

// viewedShape is the shape of input i (named name) as the node reads it.
func viewedShape(n *graph.Node, i int, name string) []int {
	if s, ok := n.Attrs.Ints("shape" + name); ok && name != "" {
		return intsOf(s)
	}
	return shapeOf(n.Inputs[i])
}

func attentionDims(n *graph.Node) (*attnDims, error) {
	names := attnIns
	if n.Op == "AttentionGrad" {
		names = attnGradIns
	}
	d := &attnDims{inNames: names, outNames: attnGradOuts}
	d.shA, d.shB, d.shV = viewedShape(n, 0, "A"), viewedShape(n, 1, "B"), viewedShape(n, 2, "V")
	r := len(d.shA)
	if r < 2 || len(d.shB) != r || len(d.shV) != r {
		return nil, nodeError(n, "operands %v, %v, %v are not matrices of one rank", d.shA, d.shB, d.shV)
	}
	d.batch = d.shA[:r-2]
	if !sameShape(d.shB[:r-2], d.batch) || !sameShape(d.shV[:r-2], d.batch) {
		return nil, nodeError(n, "operands %v, %v, %v have different batch dims", d.shA, d.shB, d.shV)
	}
	d.m, d.k, d.n, d.dv = d.shA[r-2], d.shA[r-1], d.shB[r-1], d.shV[r-1]
	if d.shB[r-2] != d.k || d.shV[r-2] != d.n {
		return nil, nodeError(n, "inner dimensions differ: %v x %v x %v", d.shA, d.shB, d.shV)
	}
	d.heads = graph.Numel(d.batch)
	d.shO = append(slices.Clone(d.batch), d.m, d.dv)
	d.shP = append(slices.Clone(d.batch), d.m, d.n)
	if n.Op == "Attention" && n.In(3) != nil {
		bs := shapeOf(n.Inputs[3])
		if len(bs) < 2 || len(bs) > r || bs[len(bs)-2] != d.m || bs[len(bs)-1] != d.n {
			return nil, nodeError(n, "bias %v is not a %dx%d matrix per head", bs, d.m, d.n)
		}
		if s, err := broadcastShapes(bs[:len(bs)-2], d.batch); err != nil || !sameShape(s, d.batch) {
			return nil, nodeError(n, "bias %v does not broadcast to the heads %v", bs, d.batch)
		}
	}
	return d, nil
}

// setViewedOut fixes output i's shape to shape, unless the node writes it
// through a view (attr "view"+name): the output then keeps the shape of the
// value it is, which must hold as many elements.
func setViewedOut(n *graph.Node, i int, name string, shape []int) error {
	if n.Attrs.Has("view" + name) {
		if graph.Numel(shapeOf(n.Outputs[i])) != graph.Numel(shape) {
			return nodeError(n, "viewed output %v does not hold %v", shapeOf(n.Outputs[i]), shape)
		}
		return nil
	}
	setOut(n, i, graph.Float32, shape)
	return nil
}

func inferAttention(n *graph.Node) error {
	d, err := attentionDims(n)
	if err != nil {
		return err
	}
	if len(n.Outputs) > 1 {
		setOut(n, 1, graph.Float32, d.shP)
	}
	return setViewedOut(n, 0, "O", d.shO)
}

func inferAttentionGrad(n *graph.Node) error {
	d, err := attentionDims(n)
	if err != nil {
		return err
	}
	if !sameShape(shapeOf(n.Inputs[3]), d.shP) {
		return nodeError(n, "attention weights %v, want %v", shapeOf(n.Inputs[3]), d.shP)
	}
	if !sameShape(viewedShape(n, 4, "DO"), d.shO) {
		return nodeError(n, "output gradient %v, want %v", viewedShape(n, 4, "DO"), d.shO)
	}
	shapes := [][]int{d.shA, d.shB, d.shV}
	if n.Attrs.Int("into", 0) == 1 {
		if len(n.Outputs) != 1 || graph.Numel(shapeOf(n.Outputs[0])) != graph.Numel(d.shA)+graph.Numel(d.shB)+graph.Numel(d.shV) {
			return nodeError(n, "the gradients do not fill the one output %v", shapeOf(n.Outputs[0]))
		}
		for _, name := range attnGradOuts {
			if !n.Attrs.Has("view" + name) {
				return nodeError(n, "gradient %s has no view into the output", name)
			}
		}
		return nil
	}
	if len(n.Outputs) != 3 {
		return nodeError(n, "%d outputs, want 3", len(n.Outputs))
	}
	for i, s := range shapes {
		if err := setViewedOut(n, i, attnGradOuts[i], s); err != nil {
			return err
		}
	}
	return nil
}

// headsOf is how the kernel reads or writes one operand of logical shape
// shape: through the view attribute "view"+name, or contiguous.
func headsOf(n *graph.Node, name string, shape, batch []int) kernels.Heads {
	off, strides := 0, stridesOf(shape)
	if name != "" {
		off, strides = viewAttr(n, "view"+name, shape)
	}
	v := viewOperand(shape, strides, off, batch, false)
	return kernels.Heads{Off: v.off, LD: v.ld, Trans: v.trans}
}

func kernelAttention(n *graph.Node) (Kernel, error) {
	d, err := attentionDims(n)
	if err != nil {
		return nil, err
	}
	ah, bh := headsOf(n, "A", d.shA, d.batch), headsOf(n, "B", d.shB, d.batch)
	vh, oh := headsOf(n, "V", d.shV, d.batch), headsOf(n, "O", d.shO, d.batch)
	alpha, prec, withP := n.Attrs.Float("alpha", 1), precisionOf(n), len(n.Outputs) > 1
	var biasOff []int
	if n.In(3) != nil {
		bs := shapeOf(n.Inputs[3])
		biasOff = indexMapBroadcast(d.batch, bs[:len(bs)-2])
		for i := range biasOff {
			biasOff[i] *= d.m * d.n
		}
	}
	return func(in, out []*graph.Tensor) {
		var p, bias []float32
		if withP {
			p = out[1].F
		}
		if biasOff != nil {
			bias = in[3].F
		}
		prec.Attention(d.heads, d.m, d.n, d.k, d.dv, alpha, in[0].F, ah, in[1].F, bh, in[2].F, vh, bias, biasOff, out[0].F, oh, p)
	}, nil
}

func kernelAttentionGrad(n *graph.Node) (Kernel, error) {
	d, err := attentionDims(n)
	if err != nil {
		return nil, err
	}
	ah, bh := headsOf(n, "A", d.shA, d.batch), headsOf(n, "B", d.shB, d.batch)
	vh, doh := headsOf(n, "V", d.shV, d.batch), headsOf(n, "DO", d.shO, d.batch)
	dah, dbh := headsOf(n, "DA", d.shA, d.batch), headsOf(n, "DB", d.shB, d.batch)
	dvh := headsOf(n, "DV", d.shV, d.batch)
	into := n.Attrs.Int("into", 0) == 1
	alpha, prec := n.Attrs.Float("alpha", 1), precisionOf(n)
	return func(in, out []*graph.Tensor) {
		da, db, dv := out[0].F, out[0].F, out[0].F
		if !into {
			db, dv = out[1].F, out[2].F
		}
		prec.AttentionGrad(d.heads, d.m, d.n, d.k, d.dv, alpha, in[0].F, ah, in[1].F, bh, in[2].F, vh, in[3].F, in[4].F, doh,
			da, dah, db, dbh, dv, dvh)
	}, nil
}

// attention: one AttentionGrad node from the kept weights p.
func gradAttention(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	if len(gy) > 1 && gy[1] != nil {
		return nil, nodeError(n, "a gradient through the attention weights is not supported")
	}
	if len(need) > 3 && need[3] {
		return nil, nodeError(n, "a gradient of the attention bias is not supported")
	}
	if len(n.Outputs) < 2 {
		// dead-code removal dropped the weights before the gradient
		// pass: the forward keeps them again
		w := b.g.NewValue(n.Outputs[0].Name+"_weights", graph.Float32, nil)
		w.Def = n
		n.Outputs = append(n.Outputs, w)
		if err := inferAttention(n); err != nil {
			return nil, err
		}
	}
	ins := []*graph.Value{n.Inputs[0], n.Inputs[1], n.Inputs[2], n.Outputs[1], gy[0]}
	g := b.g.AddNode("AttentionGrad", "grad", ins, graph.Attrs{"alpha": n.Attrs.Float("alpha", 1)},
		"grad_AttentionGrad_a", "grad_AttentionGrad_b", "grad_AttentionGrad_v")
	if err := inferAttentionGrad(g); err != nil && b.err == nil {
		b.err = err
	}
	return append(slices.Clone(g.Outputs), nil), nil
}

// pruneAttention drops the weights when no gradient reads them.
func pruneAttention(n *graph.Node, live func(*graph.Value) bool) {
	if len(n.Outputs) > 1 && !live(n.Outputs[1]) {
		n.Outputs = n.Outputs[:1]
	}
}

// fuseAttention is the fuse-attention pass: it finds
//
//	MatMul(a, b) -> [Mul or Div by scalar constants] -> [Add of a constant] -> Softmax(last axis) -> MatMul(., v)
//
// where the scores and the weights are read by the next step alone, a, b
// and v are matrices with the same batch dims, the constant (a position
// bias, not a variable) is a matrix per head broadcast over the batch dims,
// and none of the values in between is an output or a value to
// differentiate; the last product becomes Attention(a, b, v[, bias]) with
// the scale as alpha. It runs before the gradient pass, so that the
// gradient is AttentionGrad. A bias added before the scale, or reshaped on
// the way (Swin's shifted windows' mask), leaves the steps unfused.
func fuseAttention(c *compilation) error {
	pinned := map[*graph.Value]bool{}
	for _, o := range append(append([]*graph.Value{}, c.g.Outputs...), c.extra...) {
		pinned[o] = true
	}
	if c.opts.Grad != nil {
		for _, w := range c.opts.Grad.Wrt {
			pinned[c.vmap[w]] = true
		}
		pinned[c.vmap[c.opts.Grad.Loss]] = true
	}
	uses := c.g.Consumers()
	for _, n := range slices.Clone(c.g.Nodes) {
		if n.Op == "Softmax" {
			matchAttention(c, n, uses, pinned)
		}
	}
	// the replaced nodes are left to dead-code removal, after the gradient
	// pass: removing them now would also drop the weights, which only the
	// gradient reads
	return nil
}

// matchAttention fuses the attention whose softmax is sm, if it is one.
func matchAttention(c *compilation, sm *graph.Node, uses map[*graph.Value][]*graph.Node, pinned map[*graph.Value]bool) {
	x, p := sm.Inputs[0], sm.Outputs[0]
	r := len(x.StaticShape())
	if r < 2 || x.DType != graph.Float32 || pinned[p] {
		return
	}
	if axis, err := normAxis(sm, sm.Attrs.Int("axis", -1), r); err != nil || axis != r-1 {
		return
	}
	pv := only(uses, p, "MatMul")
	if pv == nil || pv.Inputs[0] != p || pv.Inputs[1] == p {
		return
	}
	s, bias := x, (*graph.Value)(nil)
	if add := s.Def; add != nil && add.Op == "Add" && len(uses[s]) == 1 {
		for i := range 2 {
			if bv := add.Inputs[i]; bv != nil && bv.IsConst() && !c.isVar[bv] && bv.DType == graph.Float32 && add.Inputs[1-i] != nil && !add.Inputs[1-i].IsConst() {
				s, bias = add.Inputs[1-i], bv
				break
			}
		}
		if bias == nil || pinned[s] {
			return
		}
	}
	alpha := 1.0
	for s.Def != nil && len(uses[s]) == 1 && !pinned[s] {
		f, by, ok := c.scalarFactor(s.Def)
		if !ok {
			break
		}
		alpha, s = alpha*f, by
	}
	mm := def(s, "MatMul")
	if mm == nil || len(uses[s]) != 1 || pinned[s] {
		return
	}
	a, b, v := mm.Inputs[0], mm.Inputs[1], pv.Inputs[1]
	for _, o := range []*graph.Value{a, b, v} {
		if o == nil || o.DType != graph.Float32 || len(o.StaticShape()) != r {
			return
		}
	}
	ins := []*graph.Value{a, b, v}
	if bias != nil {
		ins = append(ins, bias)
	}
	probe := &graph.Node{Op: "Attention", Inputs: ins}
	d, err := attentionDims(probe)
	if err != nil || !sameShape(d.shP, x.StaticShape()) || !sameShape(d.shP, s.StaticShape()) {
		return
	}
	weights := c.g.NewValue(p.Name+"_weights", graph.Float32, graph.StaticShape(d.shP...))
	weights.Def = pv
	pv.Op, pv.Inputs = "Attention", ins
	pv.Attrs = graph.Attrs{"alpha": float32(alpha)}
	pv.Outputs = []*graph.Value{pv.Outputs[0], weights}
	// the old products and softmax are dead now: deadCode removes them
}

// scalarFactor reports whether n multiplies or divides a float value by a
// one-element float constant: y = f * x.
func (c *compilation) scalarFactor(n *graph.Node) (f float64, x *graph.Value, ok bool) {
	switch n.Op {
	case "Mul":
		for i := range 2 {
			if s, isConst := c.constScalar(n.Inputs[i]); isConst && n.Inputs[1-i] != nil && !n.Inputs[1-i].IsConst() {
				return s, n.Inputs[1-i], true
			}
		}
	case "Div":
		if s, isConst := c.constScalar(n.Inputs[1]); isConst && s != 0 && n.Inputs[0] != nil && !n.Inputs[0].IsConst() {
			return 1 / s, n.Inputs[0], true
		}
	}
	return 0, nil, false
}

// fuseAttentionViews is fuse-view's part for the attention operators: their
// operands are read through views as the products' are, Attention writes
// its output through the Transposes after it, and AttentionGrad writes its
// three gradients through the views that follow them: into the Concat
// that joins them (the gradient of a packed qkv tensor) and through the
// Transposes after it, or each through its own Transposes. The nodes of a
// view written in place are removed.
func fuseAttentionViews(c *compilation, pinned map[*graph.Value]bool) {
	for _, n := range c.g.Nodes {
		if n.Op != "Attention" && n.Op != "AttentionGrad" {
			continue
		}
		names := attnIns
		if n.Op == "AttentionGrad" {
			names = attnGradIns
		}
		for i, name := range names {
			v := n.Inputs[i]
			if name == "" || n.Attrs.Has("view"+name) || len(v.StaticShape()) < 3 {
				continue
			}
			if base, off, strides, ok := operandView(v); ok {
				n.Inputs[i] = base
				n.Attrs["view"+name] = append([]int64{int64(off)}, ints64(strides)...)
				n.Attrs["shape"+name] = ints64(v.StaticShape())
			}
		}
	}
	removed := map[*graph.Node]bool{}
	uses := c.g.Consumers()
	for _, n := range c.g.Nodes {
		switch {
		case n.Op == "Attention" && !n.Attrs.Has("viewO"):
			writeThroughView(c, n, 0, "O", uses, pinned, removed)
		case n.Op == "AttentionGrad" && len(n.Outputs) == 3:
			if !gradsIntoConcat(c, n, uses, pinned, removed) {
				for j, name := range attnGradOuts {
					writeThroughView(c, n, j, name, uses, pinned, removed)
				}
			}
		}
	}
	if len(removed) > 0 {
		c.g.Nodes = slices.DeleteFunc(c.g.Nodes, func(n *graph.Node) bool { return removed[n] })
	}
}

// viewChain follows a result forward from m through the Transposes and
// size-1 reshapes that alone read it, and returns the chain's nodes, the
// index of the last Transpose through which the result, of this shape, is
// readable (-1 if none), and the map there.
func viewChain(m fwdMap, shape []int, uses map[*graph.Value][]*graph.Node, pinned map[*graph.Value]bool) (chain []*graph.Node, last int, at fwdMap) {
	last = -1
	for !pinned[m.cur] && len(uses[m.cur]) == 1 {
		u := uses[m.cur][0]
		if u.Op != "Transpose" && !isAlias(u) {
			break
		}
		next, ok := m.through(u)
		if !ok {
			break
		}
		m = next
		chain = append(chain, u)
		if _, st := m.strided(); u.Op == "Transpose" && matrixReadable(shape, st) {
			last, at = len(chain)-1, m
		}
	}
	return chain, last, at
}

// writeThroughView makes output i of n (attribute name) the result of the
// views after it, written in place, and removes their nodes.
func writeThroughView(c *compilation, n *graph.Node, i int, name string, uses map[*graph.Value][]*graph.Node, pinned map[*graph.Value]bool, removed map[*graph.Node]bool) {
	y := n.Outputs[i]
	shape := y.StaticShape()
	if len(shape) < 3 {
		return
	}
	chain, last, m := viewChain(identityFwd(y), shape, uses, pinned)
	if last < 0 {
		return
	}
	off, strides := m.strided()
	n.Attrs["view"+name] = append([]int64{int64(off)}, ints64(strides)...)
	n.Attrs["shape"+name] = ints64(shape)
	rebind(n, i, chain[last], chain[:last+1], removed)
}

// rebind makes output i of n the output of node last, whose chain of nodes
// (last included) is removed.
func rebind(n *graph.Node, i int, last *graph.Node, chain []*graph.Node, removed map[*graph.Node]bool) {
	out := last.Outputs[0]
	out.Def = n
	n.Outputs[i] = out
	for _, u := range chain {
		removed[u] = true
	}
}

// gradsIntoConcat writes AttentionGrad's three gradients into the Concat
// that joins them (through the views between), or through the Transposes
// after it, as one output (attribute into); it reports whether it did.
func gradsIntoConcat(c *compilation, n *graph.Node, uses map[*graph.Value][]*graph.Node, pinned map[*graph.Value]bool, removed map[*graph.Node]bool) bool {
	var cn *graph.Node
	var chain []*graph.Node
	maps := make([]fwdMap, 3)
	for j, y := range n.Outputs {
		m := identityFwd(y)
		for {
			if pinned[m.cur] || len(uses[m.cur]) != 1 {
				return false
			}
			u := uses[m.cur][0]
			if u.Op == "Concat" {
				if cn != nil && cn != u {
					return false
				}
				cn = u
			} else if u.Op != "Transpose" && !isAlias(u) {
				return false
			}
			next, ok := m.through(u)
			if !ok {
				return false
			}
			m = next
			if u == cn {
				break
			}
			chain = append(chain, u)
		}
		maps[j] = m
	}
	if len(cn.Inputs) != 3 {
		return false
	}
	shapes := make([][]int, 3)
	for j, y := range n.Outputs {
		shapes[j] = y.StaticShape()
	}
	readable := func(ms []fwdMap) bool {
		for j, m := range ms {
			if _, st := m.strided(); !matrixReadable(shapes[j], st) {
				return false
			}
		}
		return true
	}
	var last *graph.Node
	var best []fwdMap
	chain = append(chain, cn)
	if readable(maps) {
		last, best = cn, slices.Clone(maps)
	}
	tail := len(chain)
	for cur := cn.Outputs[0]; !pinned[cur] && len(uses[cur]) == 1; cur = uses[cur][0].Outputs[0] {
		u := uses[cur][0]
		if u.Op != "Transpose" && !isAlias(u) {
			break
		}
		for j := range maps {
			var ok bool
			if maps[j], ok = maps[j].through(u); !ok {
				return finishInto(n, last, best, chain[:tail], shapes, removed)
			}
		}
		chain = append(chain, u)
		if u.Op == "Transpose" && readable(maps) {
			last, best, tail = u, slices.Clone(maps), len(chain)
		}
	}
	return finishInto(n, last, best, chain[:tail], shapes, removed)
}

// finishInto rebinds AttentionGrad n to write its gradients through the
// maps into last's output.
func finishInto(n, last *graph.Node, maps []fwdMap, chain []*graph.Node, shapes [][]int, removed map[*graph.Node]bool) bool {
	if last == nil {
		return false
	}
	for j, name := range attnGradOuts {
		off, strides := maps[j].strided()
		n.Attrs["view"+name] = append([]int64{int64(off)}, ints64(strides)...)
		n.Attrs["shape"+name] = ints64(shapes[j])
	}
	n.Attrs["into"] = int64(1)
	rebind(n, 0, last, chain, removed)
	n.Outputs = n.Outputs[:1]
	return true
}
