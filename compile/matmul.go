package compile

import (
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/kernels"
)

// Matrix products: MatMul (numpy semantics), Gemm, and the fused forms the
// passes make: MatMulBias (fuse-bias) and MatMulConcat (fuse-view). Every
// product goes through the kernels of package kernels, in the precision the
// precision pass gave the node (precision.go).

func init() {
	define(opDef{name: "MatMul", arity: ins(2, 2), infer: inferMatMul, kernel: kernelMatMul, grad: gradMatMul})
	define(opDef{name: "Gemm", arity: ins(2, 3), infer: inferGemm, kernel: kernelGemm, grad: gradGemm})
	// MatMulBias: (a, b, bias[n]) -> MatMul(a, b) + bias: a linear layer in one step (project operator, fuse-bias)
	define(opDef{name: "MatMulBias", arity: ins(3, 3), infer: inferMatMul, kernel: kernelMatMul})
	// MatMulConcat: (a0, b0, a1, b1, ...) -> products written in place into one tensor; attr "products" ([]Attrs, one MatMul's each, with viewC) (project operator, fuse-view)
	define(opDef{name: "MatMulConcat", arity: ins(2, -1), infer: inferMatMulConcat, kernel: kernelMatMulConcat})
}

// matmulShapes applies numpy matmul rules: 1-D operands are promoted and the
// promoted dims dropped; batch dims broadcast.
type matmulPlan struct {
	out        []int
	batch      int
	m, k, n    int
	aOff, bOff []int // per batch entry, element offset of each operand
	aVec, bVec bool
}

func planMatMul(n *graph.Node, as, bs []int) (*matmulPlan, error) {
	p := &matmulPlan{}
	a, b := as, bs
	if len(a) == 0 || len(b) == 0 {
		return nil, nodeError(n, "scalar operands")
	}
	if len(a) == 1 {
		a, p.aVec = []int{1, a[0]}, true
	}
	if len(b) == 1 {
		b, p.bVec = []int{b[0], 1}, true
	}
	p.m, p.k = a[len(a)-2], a[len(a)-1]
	if b[len(b)-2] != p.k {
		return nil, nodeError(n, "inner dimensions differ: %v x %v", as, bs)
	}
	p.n = b[len(b)-1]
	ab, bb := a[:len(a)-2], b[:len(b)-2]
	batch, err := broadcastShapes(ab, bb)
	if err != nil {
		return nil, nodeError(n, "batch dims: %v", err)
	}
	p.batch = graph.Numel(batch)
	am := indexMapBroadcast(batch, ab)
	bm := indexMapBroadcast(batch, bb)
	for i := 0; i < p.batch; i++ {
		p.aOff = append(p.aOff, am[i]*p.m*p.k)
		p.bOff = append(p.bOff, bm[i]*p.k*p.n)
	}
	p.out = append([]int{}, batch...)
	if !p.aVec {
		p.out = append(p.out, p.m)
	}
	if !p.bVec {
		p.out = append(p.out, p.n)
	}
	return p, nil
}

// indexMapBroadcast maps each element of out to the broadcast element of in.
func indexMapBroadcast(out, in []int) []int {
	st := stridesOf(in)
	full := make([]int, len(out))
	off := len(out) - len(in)
	for i, d := range in {
		if d != 1 {
			full[off+i] = st[i]
		}
	}
	m32 := indexMap(out, full, 0)
	m := make([]int, len(m32))
	for i, v := range m32 {
		m[i] = int(v)
	}
	return m
}

// matmulShapes are MatMul's operand shapes as the product sees them: the
// internal transA/transB attributes (set by fuseTransposes) swap the last
// two dims of an operand read in place.
func matmulShapes(n *graph.Node) (a, b []int, ta, tb bool) {
	a, b = operandShape(n, 0), operandShape(n, 1)
	ta, tb = n.Attrs.Int("transA", 0) == 1, n.Attrs.Int("transB", 0) == 1
	swap := func(s []int) []int {
		s = append([]int{}, s...)
		s[len(s)-1], s[len(s)-2] = s[len(s)-2], s[len(s)-1]
		return s
	}
	if ta {
		a = swap(a)
	}
	if tb {
		b = swap(b)
	}
	return a, b, ta, tb
}

// operandShape is the shape of MatMul operand i as the product reads it:
// the input's, or the shape recorded with a view (see fuseViews).
func operandShape(n *graph.Node, i int) []int {
	if s, ok := n.Attrs.Ints("shape" + "AB"[i:i+1]); ok {
		return intsOf(s)
	}
	return shapeOf(n.Inputs[i])
}

func intsOf(s []int64) []int {
	o := make([]int, len(s))
	for i, v := range s {
		o[i] = int(v)
	}
	return o
}

func inferMatMul(n *graph.Node) error {
	as, bs, _, _ := matmulShapes(n)
	p, err := planMatMul(n, as, bs)
	if err != nil {
		return err
	}
	if n.Attrs.Has("viewC") {
		// the product writes its output through a view: the output keeps
		// the shape of the value it writes
		if graph.Numel(shapeOf(n.Outputs[0])) != graph.Numel(p.out) {
			return nodeError(n, "viewed output %v does not hold the product %v", shapeOf(n.Outputs[0]), p.out)
		}
		return nil
	}
	setOut(n, 0, graph.Float32, p.out)
	return nil
}

// viewedOperand is how a product reads one matrix of each batch entry: its
// offset per entry, the distance between its stored rows, and whether it is
// stored transposed (the kernel's flag, after the view's own layout).
type viewedOperand struct {
	off   []int
	ld    int
	trans bool
}

// viewOperand resolves a stored operand of shape shape (rows, cols last)
// seen through offset and strides, for the broadcast batch shape batch.
func viewOperand(shape, strides []int, offset int, batch []int, trans bool) viewedOperand {
	r := len(shape)
	rows, cols := shape[r-2], shape[r-1]
	sr, sc := strides[r-2], strides[r-1]
	var v viewedOperand
	if cols == 1 || sc == 1 {
		v.trans, v.ld = trans, sr
		if rows == 1 {
			v.ld = max(cols, 1)
		}
	} else {
		v.trans, v.ld = !trans, sc
		if cols == 1 {
			v.ld = max(rows, 1)
		}
	}
	// batch strides, aligned to the right of the broadcast batch shape; a
	// dim of 1 broadcasts (stride 0)
	bs := make([]int, len(batch))
	ob := shape[:r-2]
	for k := range ob {
		if ob[k] != 1 {
			bs[len(batch)-len(ob)+k] = strides[k]
		}
	}
	n := graph.Numel(batch)
	v.off = make([]int, n)
	idx := make([]int, len(batch))
	for e := 0; e < n; e++ {
		o := offset
		for k, i := range idx {
			o += i * bs[k]
		}
		v.off[e] = o
		for k := len(idx) - 1; k >= 0; k-- {
			if idx[k]++; idx[k] < batch[k] {
				break
			}
			idx[k] = 0
		}
	}
	return v
}

// viewOf reads the internal view attribute name of n: offset and strides,
// or the contiguous layout of shape when it is absent.
func viewAttr(n *graph.Node, name string, shape []int) (offset int, strides []int) {
	if v, ok := n.Attrs.Ints(name); ok {
		return int(v[0]), intsOf(v[1:])
	}
	return 0, stridesOf(shape)
}

// kernelViewedMatMul runs a product that reads or writes through views
// (see fuseViews): one call of the batched kernel with per-entry offsets.
func kernelViewedMatMul(n *graph.Node, p *matmulPlan, ta, tb bool, alpha float32) (Kernel, error) {
	sa, sb := operandShape(n, 0), operandShape(n, 1)
	if len(sa) < 2 || len(sb) < 2 {
		return nil, nodeError(n, "a viewed product needs matrix operands, got %v and %v", sa, sb)
	}
	batch, err := broadcastShapes(sa[:len(sa)-2], sb[:len(sb)-2])
	if err != nil {
		return nil, nodeError(n, "batch dims: %v", err)
	}
	offA, strA := viewAttr(n, "viewA", sa)
	offB, strB := viewAttr(n, "viewB", sb)
	a := viewOperand(sa, strA, offA, batch, ta)
	b := viewOperand(sb, strB, offB, batch, tb)
	cs := append(append([]int{}, batch...), p.m, p.n)
	if s, ok := n.Attrs.Ints("shapeC"); ok && graph.Numel(intsOf(s)) != graph.Numel(cs) {
		return nil, nodeError(n, "recorded output shape %v is not the product's %v", s, cs)
	}
	offC, strC := viewAttr(n, "viewC", cs)
	c := viewOperand(cs, strC, offC, batch, false)
	if c.trans {
		return nil, nodeError(n, "the output view has no contiguous rows")
	}
	prec := precisionOf(n)
	return func(in, out []*graph.Tensor) {
		prec.SgemmBatchedAt(p.batch, a.trans, b.trans, p.m, p.n, p.k, alpha, in[0].F, a.ld, a.off,
			in[1].F, b.ld, b.off, 0, out[0].F, c.ld, c.off)
	}, nil
}

func kernelMatMul(n *graph.Node) (Kernel, error) {
	as, bs, ta, tb := matmulShapes(n)
	p, err := planMatMul(n, as, bs)
	if err != nil {
		return nil, err
	}
	// leading dims are at least 1 (the kernels' rule) also for empty
	// operands; a product over k = 0 writes zeros (the bias)
	lda, ldb := max(p.k, 1), max(p.n, 1)
	if ta {
		lda = max(p.m, 1)
	}
	if tb {
		ldb = max(p.k, 1)
	}
	alpha := n.Attrs.Float("alpha", 1) // a scale folded in by fuseScales
	prec := precisionOf(n)
	if n.Attrs.Has("viewA") || n.Attrs.Has("viewB") || n.Attrs.Has("viewC") {
		return kernelViewedMatMul(n, p, ta, tb, alpha)
	}
	if n.Op == "MatMulBias" {
		if p.batch == 1 || p.sharedB(ta) {
			// one product (tall when a batch shares B): the micro-kernels
			// add the bias as they store each tile of C
			m := p.batch * p.m
			return func(in, out []*graph.Tensor) {
				prec.SgemmBias(ta, tb, m, p.n, p.k, alpha, in[0].F, lda, in[1].F, ldb, in[2].F[:p.n], out[0].F, max(p.n, 1))
			}, nil
		}
		// C starts as the bias in every row, and the products add to it
		inner, err := matmulKernel(p, prec, ta, tb, lda, ldb, alpha, 1)
		if err != nil {
			return nil, err
		}
		var bias, c []float32
		fill := func(lo, hi int) {
			for r := lo; r < hi; r++ {
				copy(c[r*p.n:(r+1)*p.n], bias)
			}
		}
		return func(in, out []*graph.Tensor) {
			bias, c = in[2].F[:p.n], out[0].F
			parallel(len(c)/p.n, max(1, (1<<14)/p.n), fill)
			inner(in, out)
		}, nil
	}
	return matmulKernel(p, prec, ta, tb, lda, ldb, alpha, 0)
}

// sharedB reports whether the batch is one tall product: one B for every
// entry and the A matrices back to back, untransposed (a linear layer on
// [batch, tokens, in]).
func (p *matmulPlan) sharedB(ta bool) bool {
	if ta || p.batch < 2 {
		return false
	}
	for i := 0; i < p.batch; i++ {
		if p.bOff[i] != 0 || p.aOff[i] != i*p.m*p.k {
			return false
		}
	}
	return true
}

// matmulKernel runs the products of plan p in precision prec:
// C = alpha op(A) op(B) + beta C.
func matmulKernel(p *matmulPlan, prec kernels.Precision, ta, tb bool, lda, ldb int, alpha, beta float32) (Kernel, error) {
	// Uniform batch strides (the usual case: no broadcasting, or one operand
	// shared by every batch entry) go to the batched kernel in one call.
	sa, sb, uniform := 0, 0, true
	if p.batch > 1 {
		sa, sb = p.aOff[1]-p.aOff[0], p.bOff[1]-p.bOff[0]
		for i := 1; i < p.batch; i++ {
			if p.aOff[i]-p.aOff[i-1] != sa || p.bOff[i]-p.bOff[i-1] != sb {
				uniform = false
			}
		}
	}
	// One B for the whole batch and the A matrices back to back (a linear
	// layer on [batch, tokens, in]): the batch is one tall product, which
	// the kernel blocks better than many short ones. Each element of C is
	// computed the same either way (blocking along k depends on k alone).
	if p.batch > 1 && p.sharedB(ta) {
		m := p.batch * p.m
		return func(in, out []*graph.Tensor) {
			prec.Sgemm(false, tb, m, p.n, p.k, alpha, in[0].F, lda, in[1].F, ldb, beta, out[0].F, max(p.n, 1))
		}, nil
	}
	return func(in, out []*graph.Tensor) {
		a, b, c := in[0].F, in[1].F, out[0].F
		if uniform {
			prec.SgemmBatched(p.batch, ta, tb, p.m, p.n, p.k, alpha, a, lda, sa, b, ldb, sb, beta, c, max(p.n, 1), p.m*p.n)
			return
		}
		for i := 0; i < p.batch; i++ {
			prec.Sgemm(ta, tb, p.m, p.n, p.k, alpha, a[p.aOff[i]:], lda, b[p.bOff[i]:], ldb, beta, c[i*p.m*p.n:], max(p.n, 1))
		}
	}, nil
}

func gemmDims(n *graph.Node) (m, k, nn int, err error) {
	a, b := shapeOf(n.Inputs[0]), shapeOf(n.Inputs[1])
	if len(a) != 2 || len(b) != 2 {
		return 0, 0, 0, nodeError(n, "A and B must be 2-D, got %v and %v", a, b)
	}
	m, k = a[0], a[1]
	if n.Attrs.Int("transA", 0) == 1 {
		m, k = k, m
	}
	kb, nn := b[0], b[1]
	if n.Attrs.Int("transB", 0) == 1 {
		kb, nn = nn, kb
	}
	if kb != k {
		return 0, 0, 0, nodeError(n, "inner dimensions differ: %v, %v", a, b)
	}
	return m, k, nn, nil
}

func inferGemm(n *graph.Node) error {
	m, _, nn, err := gemmDims(n)
	if err != nil {
		return err
	}
	if c := n.In(2); c != nil {
		if _, err := broadcastShapes(shapeOf(c), []int{m, nn}); err != nil {
			return nodeError(n, "C: %v", err)
		}
	}
	setOut(n, 0, graph.Float32, []int{m, nn})
	return nil
}

func kernelGemm(n *graph.Node) (Kernel, error) {
	m, k, nn, err := gemmDims(n)
	if err != nil {
		return nil, err
	}
	ta, tb := n.Attrs.Int("transA", 0) == 1, n.Attrs.Int("transB", 0) == 1
	alpha, beta := n.Attrs.Float("alpha", 1), n.Attrs.Float("beta", 1)
	lda, ldb := max(k, 1), max(nn, 1) // at least 1, also for empty operands
	if ta {
		lda = max(m, 1)
	}
	if tb {
		ldb = max(k, 1)
	}
	var cmap []int
	biasRow := false
	if c := n.In(2); c != nil {
		cmap = indexMapBroadcast([]int{m, nn}, shapeOf(c))
		// C a row broadcast to every row (a linear layer's bias) added once
		// (beta 1): the micro-kernels add it as they store each tile of
		// the product, the same as filling Y with it first (kernels.SgemmBias).
		cs := shapeOf(c)
		biasRow = beta == 1 && len(cs) > 0 && graph.Numel(cs) == nn && cs[len(cs)-1] == nn
	}
	prec := precisionOf(n)
	var y, c []float32
	// fill copies C, broadcast, into rows [lo, hi) of Y.
	fill := func(lo, hi int) {
		for i := lo * nn; i < hi*nn; i++ {
			y[i] = c[cmap[i]]
		}
	}
	return func(in, out []*graph.Tensor) {
		y = out[0].F
		b := float32(0)
		if cmap != nil && beta != 0 {
			c = in[2].F
			if biasRow {
				prec.SgemmBias(ta, tb, m, nn, k, alpha, in[0].F, lda, in[1].F, ldb, c[:nn], y, max(nn, 1))
				return
			}
			parallel(m, max(1, (1<<14)/max(nn, 1)), fill)
			b = beta
		}
		prec.Sgemm(ta, tb, m, nn, k, alpha, in[0].F, lda, in[1].F, ldb, b, y, max(nn, 1))
	}, nil
}

// products are the MatMul nodes a MatMulConcat runs, each reading inputs
// 2i and 2i+1 and writing through its viewC into the one output.
func products(n *graph.Node) ([]*graph.Node, error) {
	attrs, ok := n.Attrs["products"].([]graph.Attrs)
	if !ok || len(attrs) == 0 || len(n.Inputs) != 2*len(attrs) {
		return nil, nodeError(n, "%d inputs for %d products", len(n.Inputs), len(attrs))
	}
	out := n.Outputs[0]
	ps := make([]*graph.Node, len(attrs))
	for i, a := range attrs {
		if !a.Has("viewC") {
			return nil, nodeError(n, "product %d has no output view", i)
		}
		ps[i] = &graph.Node{Name: n.Name, Op: "MatMul", Inputs: n.Inputs[2*i : 2*i+2], Outputs: []*graph.Value{out}, Attrs: a}
	}
	return ps, nil
}

func inferMatMulConcat(n *graph.Node) error {
	ps, err := products(n)
	if err != nil {
		return err
	}
	total := 0
	for _, p := range ps {
		as, bs, _, _ := matmulShapes(p)
		pl, err := planMatMul(p, as, bs)
		if err != nil {
			return err
		}
		total += graph.Numel(pl.out)
	}
	if total != graph.Numel(shapeOf(n.Outputs[0])) {
		return nodeError(n, "the products hold %d elements, the output %v", total, shapeOf(n.Outputs[0]))
	}
	return nil
}

func kernelMatMulConcat(n *graph.Node) (Kernel, error) {
	ps, err := products(n)
	if err != nil {
		return nil, err
	}
	ks := make([]Kernel, len(ps))
	for i, p := range ps {
		if ks[i], err = kernelMatMul(p); err != nil {
			return nil, err
		}
	}
	return func(in, out []*graph.Tensor) {
		for i, k := range ks {
			k(in[2*i:2*i+2], out)
		}
	}, nil
}

// matmul: dA = dY B^T, dB = A^T dY, with numpy's 1-D promotion and batch
// broadcasting undone. A 2-D right operand (a linear layer's weight) uses Gemm
// over the flattened rows so that dW is one matrix product.
func gradMatMul(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	A, B := n.Inputs[0], n.Inputs[1]
	as, bs := A.StaticShape(), B.StaticShape()
	pa, pb := as, bs
	if len(as) == 1 {
		pa = []int{1, as[0]}
	}
	if len(bs) == 1 {
		pb = []int{bs[0], 1}
	}
	a, bb := b.reshape(A, pa), b.reshape(B, pb)
	p, err := planMatMul(n, pa, pb)
	if err != nil {
		return nil, err
	}
	g := b.reshape(gy[0], p.out)
	out := make([]*graph.Value, 2)
	k, nn := p.k, p.n
	if len(pb) == 2 {
		rows := graph.Numel(pa) / k
		g2 := b.reshape(g, []int{rows, nn})
		if need[0] {
			out[0] = b.reshape(b.op("Gemm", graph.Attrs{"transB": int64(1)}, g2, bb), as)
		}
		if need[1] {
			out[1] = b.reshape(b.op("Gemm", graph.Attrs{"transA": int64(1)}, b.reshape(a, []int{rows, k}), g2), bs)
		}
		return out, nil
	}
	if need[0] {
		out[0] = b.reshape(b.sumTo(b.op("MatMul", nil, g, b.swapLast(bb)), pa), as)
	}
	if need[1] {
		out[1] = b.reshape(b.sumTo(b.op("MatMul", nil, b.swapLast(a), g), pb), bs)
	}
	return out, nil
}

// gemm: Y = alpha op(A) op(B) + beta C.
func gradGemm(b *builder, n *graph.Node, gy []*graph.Value, need []bool) ([]*graph.Value, error) {
	ta, tb := n.Attrs.Int("transA", 0), n.Attrs.Int("transB", 0)
	alpha, beta := n.Attrs.Float("alpha", 1), n.Attrs.Float("beta", 1)
	A, B, g := n.Inputs[0], n.Inputs[1], gy[0]
	out := make([]*graph.Value, 3)
	if need[0] {
		if ta == 0 { // dA = alpha dY op(B)^T
			out[0] = b.op("Gemm", graph.Attrs{"alpha": alpha, "transB": 1 - tb}, g, B)
		} else { // dA = alpha op(B) dY^T
			out[0] = b.op("Gemm", graph.Attrs{"alpha": alpha, "transA": tb, "transB": int64(1)}, B, g)
		}
	}
	if need[1] {
		if tb == 0 { // dB = alpha op(A)^T dY
			out[1] = b.op("Gemm", graph.Attrs{"alpha": alpha, "transA": 1 - ta}, A, g)
		} else { // dB = alpha dY^T op(A)
			out[1] = b.op("Gemm", graph.Attrs{"alpha": alpha, "transA": int64(1), "transB": ta}, g, A)
		}
	}
	if len(need) > 2 && need[2] {
		gc := b.sumTo(g, n.Inputs[2].StaticShape())
		if beta != 1 {
			gc = b.mul(gc, b.scalar(beta))
		}
		out[2] = gc
	}
	return out, nil
}
