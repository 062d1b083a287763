package kernels

import (
	"fmt"

	"github.com/hyperat/hyperat/kernels/vmath"
)

// Heads is how an attention kernel reads or writes one operand of each of
// a batch of heads: matrix i starts at Off[i], its stored rows LD apart,
// and it is stored transposed when Trans is set (the heads of a tensor
// read in place, as SgemmBatchedAt reads them).
type Heads struct {
	Off   []int
	LD    int
	Trans bool
}

// Attention computes, for each head i in [0, batch),
//
//	P = softmax(alpha op(A) op(B) + bias)   m×n, softmax along each row
//	O = P op(V)                             m×dv
//
// bias, when not nil, is a contiguous m×n matrix per head, at
// bias[biasOff[i]:] (an additive position bias or mask; heads may share
// one), added to the scaled scores as an addition of its own would add it.
// op(A) m×k, op(B) k×n, op(V) n×dv, O written through its view (the
// transpose of O when o.Trans). Each head is one task: its scores are
// computed, normalized and multiplied by V while they are in cache, by the
// same products (those of Sgemm) and the same softmax (vmath.SoftmaxRows) as
// the three steps apart, so the result is the same bit for bit. When p is
// not nil it receives each head's P, contiguous, at p[i*m*n:], for
// AttentionGrad. The heads' O matrices must not share elements. It is
// FP32.Attention.
func Attention(batch, m, n, k, dv int, alpha float32, a []float32, ah Heads, b []float32, bh Heads, v []float32, vh Heads, bias []float32, biasOff []int, o []float32, oh Heads, p []float32) {
	FP32.Attention(batch, m, n, k, dv, alpha, a, ah, b, bh, v, vh, bias, biasOff, o, oh, p)
}

// Attention computes attention as the function Attention does, with pr's
// products.
func (pr Precision) Attention(batch, m, n, k, dv int, alpha float32, a []float32, ah Heads, b []float32, bh Heads, v []float32, vh Heads, bias []float32, biasOff []int, o []float32, oh Heads, p []float32) {
	const fn = "Attention"
	checkHeads(fn, "A", batch, a, ah, m, k)
	checkHeads(fn, "B", batch, b, bh, k, n)
	checkHeads(fn, "V", batch, v, vh, n, dv)
	checkHeads(fn, "O", batch, o, oh, m, dv)
	if p != nil && len(p) < batch*m*n {
		panic(fmt.Sprintf("kernels: %s: len(P) = %d, need %d", fn, len(p), batch*m*n))
	}
	if bias != nil {
		checkHeads(fn, "bias", batch, bias, Heads{Off: biasOff, LD: max(n, 1)}, m, n)
	}
	t := attnTasks.get()
	*t = attnTask{v: pr.variant(), batch: batch, m: m, n: n, k: k, dv: dv, alpha: alpha,
		a: a, ah: ah, b: b, bh: bh, vv: v, vh: vh, o: o, oh: oh, p: p, bias: bias, biasOff: biasOff}
	t.run()
	*t = attnTask{}
	attnTasks.put(t)
}

// AttentionGrad computes the gradients of Attention for each head, from
// its P (contiguous, at p[i*m*n:], as Attention wrote it) and dO:
//
//	dV = P^T dO                          n×dv
//	dP = dO op(V)^T                      m×n
//	dS = P (dP - rowsum(dP P))           the softmax's gradient
//	dA = alpha dS op(B)^T                m×k
//	dB = alpha op(A)^T dS                k×n
//
// each written through its view, and each head one task that keeps dP in
// cache. The results are those of the products and the softmax gradient
// (vmath.SoftmaxGradRows) apart, bit for bit. A nil output is not computed.
// It is FP32.AttentionGrad.
func AttentionGrad(batch, m, n, k, dv int, alpha float32, a []float32, ah Heads, b []float32, bh Heads, v []float32, vh Heads, p []float32, do []float32, doh Heads,
	da []float32, dah Heads, db []float32, dbh Heads, dvv []float32, dvh Heads) {
	FP32.AttentionGrad(batch, m, n, k, dv, alpha, a, ah, b, bh, v, vh, p, do, doh, da, dah, db, dbh, dvv, dvh)
}

// AttentionGrad computes the gradients as the function AttentionGrad does,
// with pr's products.
func (pr Precision) AttentionGrad(batch, m, n, k, dv int, alpha float32, a []float32, ah Heads, b []float32, bh Heads, v []float32, vh Heads, p []float32, do []float32, doh Heads,
	da []float32, dah Heads, db []float32, dbh Heads, dvv []float32, dvh Heads) {
	const fn = "AttentionGrad"
	checkHeads(fn, "A", batch, a, ah, m, k)
	checkHeads(fn, "B", batch, b, bh, k, n)
	checkHeads(fn, "V", batch, v, vh, n, dv)
	checkHeads(fn, "dO", batch, do, doh, m, dv)
	if da != nil {
		checkHeads(fn, "dA", batch, da, dah, m, k)
	}
	if db != nil {
		checkHeads(fn, "dB", batch, db, dbh, k, n)
	}
	if dvv != nil {
		checkHeads(fn, "dV", batch, dvv, dvh, n, dv)
	}
	if len(p) < batch*m*n {
		panic(fmt.Sprintf("kernels: %s: len(P) = %d, need %d", fn, len(p), batch*m*n))
	}
	t := attnTasks.get()
	*t = attnTask{v: pr.variant(), grad: true, batch: batch, m: m, n: n, k: k, dv: dv, alpha: alpha,
		a: a, ah: ah, b: b, bh: bh, vv: v, vh: vh, p: p, o: do, oh: doh,
		da: da, dah: dah, db: db, dbh: dbh, dvv: dvv, dvh: dvh}
	t.run()
	*t = attnTask{}
	attnTasks.put(t)
}

// checkHeads panics unless every head's matrix of op(X), rows×cols, lies
// within x.
func checkHeads(fn, name string, batch int, x []float32, h Heads, rows, cols int) {
	if batch < 0 || rows < 0 || cols < 0 {
		panic(fmt.Sprintf("kernels: %s: negative dimension", fn))
	}
	if len(h.Off) < batch {
		panic(fmt.Sprintf("kernels: %s: %d offsets of %s for %d heads", fn, len(h.Off), name, batch))
	}
	stored := cols
	if h.Trans {
		stored = rows
	}
	if h.LD < max(1, stored) {
		panic(fmt.Sprintf("kernels: %s: the rows of %s are %d apart, less than their %d columns", fn, name, h.LD, stored))
	}
	span := matrixLen(h.Trans, rows, cols, h.LD)
	for i := 0; i < batch; i++ {
		if h.Off[i] < 0 {
			panic(fmt.Sprintf("kernels: %s: negative offset of %s for head %d", fn, name, i))
		}
		checkLen(fn, name, len(x)-h.Off[i], 0, 1, span)
	}
}

// attnTask runs the heads of one Attention or AttentionGrad call, a
// contiguous range of heads per task.
type attnTask struct {
	v              *sgemmVariant
	grad           bool
	batch, parts   int
	m, n, k, dv    int
	alpha          float32
	a, b, vv, o, p []float32 // o is dO for the gradient
	ah, bh, vh, oh Heads
	da, db, dvv    []float32
	dah, dbh, dvh  Heads
	bias           []float32
	biasOff        []int
}

func (t *attnTask) run() {
	if t.batch == 0 {
		return
	}
	threads := Threads()
	t.parts = min(t.batch, 4*threads)
	runTasks(t.parts, threads, t)
}

// attnScratch holds one task's matrix of scores.
type attnScratch struct{ s []float32 }

var (
	attnTasks    freeList[attnTask]
	attnScratchs freeList[attnScratch]
)

func (t *attnTask) runTask(part, _ int) {
	pl := plans.get()
	sc := attnScratchs.get()
	mn := t.m * t.n
	if len(sc.s) < mn {
		sc.s = make([]float32, mn)
	}
	end := (part + 1) * t.batch / t.parts
	for i := part * t.batch / t.parts; i < end; i++ {
		if i+1 < end {
			t.prefetch(i + 1)
		}
		if t.grad {
			t.backward(pl, i, sc.s[:mn])
		} else {
			t.forward(pl, i, sc.s[:mn])
		}
	}
	attnScratchs.put(sc)
	plans.put(pl)
}

// forward computes head i's P (into p's part, or s) and O.
func (t *attnTask) forward(pl *gemmPlan, i int, s []float32) {
	m, n := t.m, t.n
	if t.p != nil {
		s = t.p[i*m*n : (i+1)*m*n]
	}
	a, b, v, o := at(t.a, t.ah, i), at(t.b, t.bh, i), at(t.vv, t.vh, i), at(t.o, t.oh, i)
	plain := Heads{LD: max(n, 1)}
	t.prod(pl, m, n, t.k, t.alpha, a, t.ah, b, t.bh, s, plain)
	if t.bias != nil && m*n > 0 {
		vmath.Arith(vmath.Add, s, s, t.bias[t.biasOff[i]:t.biasOff[i]+m*n])
	}
	vmath.SoftmaxRows(s, s, m, n)
	t.prod(pl, m, t.dv, n, 1, s, plain, v, t.vh, o, t.oh)
}

// backward computes head i's gradients, with s holding dP then dS.
func (t *attnTask) backward(pl *gemmPlan, i int, s []float32) {
	m, n, k, dv := t.m, t.n, t.k, t.dv
	p := t.p[i*m*n : (i+1)*m*n]
	do, v := at(t.o, t.oh, i), at(t.vv, t.vh, i)
	plain := Heads{LD: max(n, 1)}
	if t.dvv != nil { // dV = P^T dO
		t.prod(pl, n, dv, m, 1, p, Heads{LD: plain.LD, Trans: true}, do, t.oh, at(t.dvv, t.dvh, i), t.dvh)
	}
	if t.da == nil && t.db == nil {
		return
	}
	// dP = dO op(V)^T, then dS in place
	t.prod(pl, m, n, dv, 1, do, t.oh, v, flip(t.vh), s, plain)
	if n > 0 {
		vmath.SoftmaxGradRows(s, p, s, m, n)
	}
	if t.da != nil { // dA = alpha dS op(B)^T
		t.prod(pl, m, k, n, t.alpha, s, plain, at(t.b, t.bh, i), flip(t.bh), at(t.da, t.dah, i), t.dah)
	}
	if t.db != nil { // dB = alpha op(A)^T dS
		t.prod(pl, k, n, m, t.alpha, at(t.a, t.ah, i), flip(t.ah), s, plain, at(t.db, t.dbh, i), t.dbh)
	}
}

// at is head i's part of x.
func at(x []float32, h Heads, i int) []float32 { return x[h.Off[i]:] }

// flip is the view of the transposed operand.
func flip(h Heads) Heads { return Heads{Off: h.Off, LD: h.LD, Trans: !h.Trans} }

// prod computes C = alpha op(X) op(Y) on one goroutine, op(X) m×k and
// op(Y) k×n, C written through its view: when the view is transposed, C^T =
// op(Y)^T op(X)^T is computed instead, into rows that are contiguous.
func (t *attnTask) prod(pl *gemmPlan, m, n, k int, alpha float32, x []float32, xh Heads, y []float32, yh Heads, c []float32, ch Heads) {
	if ch.Trans {
		m, n = n, m
		x, y = y, x
		xh, yh = flip(yh), flip(xh)
	}
	g := gemmArgs{transA: xh.Trans, transB: yh.Trans, m: m, n: n, k: k, alpha: alpha,
		a: x, lda: xh.LD, b: y, ldb: yh.LD, c: c, ldc: ch.LD}
	pl.gemm(t.v, &g, 1)
}

// prefetch asks for the operands of head i, so that they arrive while the
// head before it computes: the heads are read in place from tensors much
// larger than L2 (the qkv product's output, written just before), so each
// head's first touch of its rows would otherwise wait on memory. On the
// MNIST fixture's heads (50 tokens of 32) this takes about a tenth off a
// forward and backward whose operands start out of cache; ViT-B/16's
// larger heads compute long enough that it changes nothing.
func (t *attnTask) prefetch(i int) {
	pf := func(x []float32, h Heads, rows, cols int) {
		if x == nil {
			return
		}
		if h.Trans {
			rows, cols = cols, rows
		}
		prefetchRows(x[h.Off[i]:], rows, h.LD, cols)
	}
	pf(t.a, t.ah, t.m, t.k)
	pf(t.b, t.bh, t.k, t.n)
	pf(t.vv, t.vh, t.n, t.dv)
	if t.grad {
		pf(t.o, t.oh, t.m, t.dv)
		prefetchRows(t.p[i*t.m*t.n:], 1, 0, t.m*t.n)
	}
}
