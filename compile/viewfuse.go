package compile

import (
	"slices"

	"github.com/hyperat/hyperat/graph"
)

// fuseViews lets batched products read their operands and write their
// result through strided views instead of through copies. Attention splits
// one [batch, tokens, 3, heads, d] tensor into queries, keys and values and
// moves the heads in front (Transpose, Split, Squeeze), then moves them back
// after the product with the values; every one of those copies passes over
// a tensor as large as the activations. A product reads a head's matrix in
// place (its rows are a fixed distance apart) as well as from a contiguous
// copy, so:
//
//   - an operand made from another value by Transposes, Splits and
//     reshapes that only add or drop dims of size 1 is read from that
//     value, through the internal attributes viewA/viewB (offset, then one
//     stride per dim of the operand) and shapeA/shapeB (the operand's
//     shape);
//   - a product whose only reader is such a chain ending in a Transpose
//     that keeps the last dim last writes the chain's result in place: the
//     last node of the chain becomes the product, with viewC and shapeC
//     (the product's own output shape).
//
// Views are used only where each matrix keeps one dim contiguous, as the
// matrix-multiply kernel needs; the copies they replace are then dead.
func fuseViews(c *compilation) error {
	for _, n := range c.g.Nodes {
		if n.Op != "MatMul" || len(shapeOf(n.Inputs[0])) < 2 || len(shapeOf(n.Inputs[1])) < 2 {
			continue
		}
		for i, name := range []string{"A", "B"} {
			if n.Attrs.Has("view" + name) {
				continue
			}
			v := n.Inputs[i]
			if len(v.StaticShape()) < 3 { // matrices and vectors have no batch to view
				continue
			}
			base, off, strides, ok := operandView(v)
			if !ok {
				continue
			}
			if n.Attrs == nil {
				n.Attrs = graph.Attrs{}
			}
			n.Inputs[i] = base
			n.Attrs["view"+name] = append([]int64{int64(off)}, ints64(strides)...)
			n.Attrs["shape"+name] = ints64(v.StaticShape())
		}
	}
	pinned := map[*graph.Value]bool{}
	for _, o := range append(append([]*graph.Value{}, c.g.Outputs...), c.extra...) {
		pinned[o] = true
	}
	fuseAttentionViews(c, pinned)
	uses := c.g.Consumers()
	for _, n := range c.g.Nodes {
		if n.Op == "Concat" {
			fuseConcatProducts(n, uses, pinned)
		}
	}
	uses = c.g.Consumers()
	for _, n := range c.g.Nodes {
		if n.Op != "MatMul" || n.Attrs.Has("viewC") {
			continue
		}
		y := n.Outputs[0]
		if len(y.StaticShape()) < 3 || len(shapeOf(n.Inputs[0])) < 2 || len(shapeOf(n.Inputs[1])) < 2 {
			continue
		}
		last, off, strides, ok := resultView(y, uses, pinned)
		if !ok {
			continue
		}
		attrs := n.Attrs.Clone()
		attrs["viewC"] = append([]int64{int64(off)}, ints64(strides)...)
		attrs["shapeC"] = ints64(y.StaticShape())
		last.Op, last.Inputs, last.Attrs = "MatMul", slices.Clone(n.Inputs), attrs
		// n and the chain's other nodes are now dead: nothing reads y
	}
	return nil
}

// dimMap follows the dims of a value back through views: dims[k] is the dim
// of the current value that dim k of the original value reads (-1 for a dim
// of size 1), start the first element's coordinate in the current value.
type dimMap struct {
	cur   *graph.Value
	dims  []int
	start []int
}

func identityMap(v *graph.Value) dimMap {
	r := len(v.StaticShape())
	m := dimMap{cur: v, dims: make([]int, r), start: make([]int, r)}
	for i := range m.dims {
		m.dims[i] = i
	}
	return m
}

// strided is the map as an offset and strides into the current value's
// contiguous buffer.
func (m dimMap) strided() (off int, strides []int) {
	st := stridesOf(m.cur.StaticShape())
	for d, s := range m.start {
		off += s * st[d]
	}
	strides = make([]int, len(m.dims))
	for k, d := range m.dims {
		if d >= 0 {
			strides[k] = st[d]
		}
	}
	return off, strides
}

// back moves the map from n's output to its input, if n is a view.
func (m dimMap) back() (dimMap, bool) {
	n := m.cur.Def
	if n == nil || len(n.Inputs) == 0 || n.Inputs[0] == nil || n.Inputs[0].DType != graph.Float32 {
		return m, false
	}
	in := n.Inputs[0]
	inShape := in.StaticShape()
	switch {
	case n.Op == "Transpose":
		p, err := perm(n, len(inShape))
		if err != nil {
			return m, false
		}
		next := dimMap{cur: in, dims: make([]int, len(m.dims)), start: make([]int, len(inShape))}
		for k, d := range m.dims {
			next.dims[k] = -1
			if d >= 0 {
				next.dims[k] = p[d]
			}
		}
		for d, s := range m.start {
			next.start[p[d]] = s
		}
		return next, true
	case n.Op == "Split":
		axis, err := normAxis(n, n.Attrs.Int("axis", 0), len(inShape))
		if err != nil {
			return m, false
		}
		off := 0
		for _, o := range n.Outputs {
			if o == m.cur {
				break
			}
			off += o.StaticShape()[axis]
		}
		next := dimMap{cur: in, dims: slices.Clone(m.dims), start: slices.Clone(m.start)}
		next.start[axis] += off
		return next, true
	case isAlias(n):
		from, to := nonUnitDims(m.cur.StaticShape()), nonUnitDims(inShape)
		if len(from) != len(to) {
			return m, false
		}
		outShape := m.cur.StaticShape()
		for i := range from {
			if outShape[from[i]] != inShape[to[i]] {
				return m, false
			}
		}
		next := dimMap{cur: in, dims: make([]int, len(m.dims)), start: make([]int, len(inShape))}
		for k, d := range m.dims {
			next.dims[k] = -1
			if d >= 0 {
				if i := slices.Index(from, d); i >= 0 {
					next.dims[k] = to[i]
				}
			}
		}
		for i, d := range from {
			next.start[to[i]] = m.start[d]
		}
		return next, true
	}
	return m, false
}

// nonUnitDims lists the dims of s that are not 1.
func nonUnitDims(s []int) []int {
	var d []int
	for i, n := range s {
		if n != 1 {
			d = append(d, i)
		}
	}
	return d
}

// operandView follows v back through views as far as the kernel can read
// the result, and returns the value to read with the offset and the strides
// of v's dims in it; ok is false when v is best read as it is.
func operandView(v *graph.Value) (base *graph.Value, off int, strides []int, ok bool) {
	shape := v.StaticShape()
	m := identityMap(v)
	for {
		next, moved := m.back()
		if !moved {
			break
		}
		m = next
		if o, st := m.strided(); matrixReadable(shape, st) {
			base, off, strides, ok = m.cur, o, st, true
		}
	}
	return base, off, strides, ok
}

// fwdMap follows the dims of a product's result forward through views:
// dims[k] is the dim of the current value that dim k of the result became
// (-1 for a dim of size 1 that was dropped), start the coordinate of the
// result's first element in the current value.
type fwdMap struct {
	cur   *graph.Value
	dims  []int
	start []int
}

func identityFwd(v *graph.Value) fwdMap {
	m := identityMap(v)
	return fwdMap{cur: m.cur, dims: m.dims, start: m.start}
}

// strided is the map as an offset and strides into the current value.
func (m fwdMap) strided() (off int, strides []int) {
	return dimMap{cur: m.cur, dims: m.dims, start: m.start}.strided()
}

// through moves the map to the output of n, which reads m.cur: a
// Transpose, a reshape that adds or drops dims of size 1, or a Concat that
// reads m.cur once.
func (m fwdMap) through(n *graph.Node) (fwdMap, bool) {
	if len(n.Outputs) != 1 || n.Outputs[0].DType != graph.Float32 {
		return m, false
	}
	out := n.Outputs[0]
	curShape, outShape := m.cur.StaticShape(), out.StaticShape()
	next := fwdMap{cur: out, dims: make([]int, len(m.dims)), start: make([]int, len(outShape))}
	switch {
	case n.Op == "Transpose" && n.Inputs[0] == m.cur:
		p, err := perm(n, len(curShape))
		if err != nil {
			return m, false
		}
		inv := make([]int, len(p))
		for j, d := range p {
			inv[d] = j
		}
		for k, d := range m.dims {
			next.dims[k] = -1
			if d >= 0 {
				next.dims[k] = inv[d]
			}
		}
		for d, s := range m.start {
			next.start[inv[d]] = s
		}
	case isAlias(n) && n.Inputs[0] == m.cur:
		from, to := nonUnitDims(curShape), nonUnitDims(outShape)
		if len(from) != len(to) {
			return m, false
		}
		for i := range from {
			if curShape[from[i]] != outShape[to[i]] {
				return m, false
			}
		}
		for k, d := range m.dims {
			next.dims[k] = -1
			if d >= 0 {
				if i := slices.Index(from, d); i >= 0 {
					next.dims[k] = to[i]
				}
			}
		}
		for i, d := range from {
			next.start[to[i]] = m.start[d]
		}
	case n.Op == "Concat":
		axis, err := normAxis(n, n.Attrs.Int("axis", 0), len(curShape))
		if err != nil || len(outShape) != len(curShape) {
			return m, false
		}
		off, seen := 0, 0
		for _, in := range n.Inputs {
			if in == m.cur {
				seen++
			} else if seen == 0 {
				off += in.StaticShape()[axis]
			}
		}
		if seen != 1 {
			return m, false
		}
		copy(next.dims, m.dims)
		copy(next.start, m.start)
		next.start[axis] += off
	default:
		return m, false
	}
	return next, true
}

// writable reports whether the product's result, of this shape, can be
// written through the map: matrices with contiguous rows.
func (m fwdMap) writable(shape []int) bool {
	_, s := m.strided()
	return matrixReadable(shape, s) && (shape[len(shape)-1] == 1 || s[len(s)-1] == 1)
}

// resultView follows the product's result y forward through its only
// reader, while that is a view, to the last Transpose that keeps y's last
// dim contiguous; it returns that Transpose's node (whose output the
// product will write) with the offset and strides of y's dims in it.
func resultView(y *graph.Value, uses map[*graph.Value][]*graph.Node, pinned map[*graph.Value]bool) (last *graph.Node, off int, strides []int, ok bool) {
	shape := y.StaticShape()
	m := identityFwd(y)
	for !pinned[m.cur] && len(uses[m.cur]) == 1 {
		n := uses[m.cur][0]
		if n.Op == "Concat" {
			return
		}
		next, moved := m.through(n)
		if !moved {
			return
		}
		m = next
		if n.Op == "Transpose" && m.writable(shape) {
			off, strides = m.strided()
			last, ok = n, true
		}
	}
	return
}

// fuseConcatProducts lets products whose results are only concatenated
// (attention's gradients for queries, keys and values) write them in place:
// into the Concat's output, or through the Transposes that follow it into
// theirs. The last node of that chain becomes a MatMulConcat that runs the
// products, each with its view (attribute products: each product's MatMul
// attributes with viewC and shapeC); the products, the Concat and the
// views between are then dead.
func fuseConcatProducts(cn *graph.Node, uses map[*graph.Value][]*graph.Node, pinned map[*graph.Value]bool) {
	var prods []*graph.Node
	var maps []fwdMap
	for _, v := range cn.Inputs {
		// back from the Concat's input to a product, through reshapes
		// that only it reads
		var chain []*graph.Node
		cur := v
		for cur.Def != nil && isAlias(cur.Def) {
			chain = append(chain, cur.Def)
			cur = cur.Def.Inputs[0]
			if pinned[cur] || len(uses[cur]) != 1 {
				return
			}
		}
		m := cur.Def
		if m == nil || m.Op != "MatMul" || m.Attrs.Has("viewC") || pinned[cur] || len(uses[cur]) != 1 ||
			len(cur.StaticShape()) < 2 || len(shapeOf(m.Inputs[0])) < 2 || len(shapeOf(m.Inputs[1])) < 2 ||
			slices.Contains(prods, m) {
			return
		}
		fm := identityFwd(cur)
		for i := len(chain) - 1; i >= 0; i-- {
			var ok bool
			if fm, ok = fm.through(chain[i]); !ok {
				return
			}
		}
		var ok bool
		if fm, ok = fm.through(cn); !ok {
			return
		}
		prods, maps = append(prods, m), append(maps, fm)
	}
	if len(prods) == 0 {
		return
	}
	writable := func() bool {
		for i, m := range prods {
			if !maps[i].writable(m.Outputs[0].StaticShape()) {
				return false
			}
		}
		return true
	}
	var last *graph.Node
	var best []fwdMap
	if writable() {
		last, best = cn, slices.Clone(maps)
	}
	for cur := cn.Outputs[0]; !pinned[cur] && len(uses[cur]) == 1; cur = uses[cur][0].Outputs[0] {
		n := uses[cur][0]
		if n.Op != "Transpose" && !isAlias(n) {
			break
		}
		next := make([]fwdMap, len(maps))
		moved := true
		for i := range maps {
			next[i], moved = maps[i].through(n)
			if !moved {
				break
			}
		}
		if !moved {
			break
		}
		maps = next
		if n.Op == "Transpose" && writable() {
			last, best = n, slices.Clone(maps)
		}
	}
	if last == nil {
		return
	}
	var ins []*graph.Value
	var attrs []graph.Attrs
	for i, m := range prods {
		a := m.Attrs.Clone()
		if a == nil {
			a = graph.Attrs{}
		}
		off, strides := best[i].strided()
		a["viewC"] = append([]int64{int64(off)}, ints64(strides)...)
		a["shapeC"] = ints64(m.Outputs[0].StaticShape())
		ins = append(ins, m.Inputs[0], m.Inputs[1])
		attrs = append(attrs, a)
	}
	last.Op, last.Inputs, last.Attrs = "MatMulConcat", ins, graph.Attrs{"products": attrs}
}

// matrixReadable reports whether a tensor of this shape, seen through these
// strides, has matrices (its last two dims) that the kernel can read: one
// of the two dims contiguous and the rows of the other apart by at least a
// row's length, so that no two elements share storage.
func matrixReadable(shape, strides []int) bool {
	r := len(shape)
	if r < 2 {
		return false
	}
	rows, cols := shape[r-2], shape[r-1]
	sr, sc := strides[r-2], strides[r-1]
	switch {
	case cols == 1 || sc == 1:
		return rows == 1 || sr >= cols
	case rows == 1 || sr == 1:
		return cols == 1 || sc >= rows
	}
	return false
}

func ints64(s []int) []int64 {
	o := make([]int64, len(s))
	for i, v := range s {
		o[i] = int64(v)
	}
	return o
}
