package kernels

import (
	"fmt"

	"github.com/hyperat/hyperat/kernels/cpu"
)

// Sgemm computes C = alpha*op(A)*op(B) + beta*C for row-major float32
// matrices, where op(A) is m×k and op(B) is k×n: op(X) is X, or its transpose
// when transX is set. lda, ldb and ldc are the distances between consecutive
// rows of the stored A, B and C. When beta is 0, C is only written, never
// read, so that NaNs in it do not propagate; when alpha is 0 or k is 0, A and
// B are not read.
//
// C must not overlap A or B. Each element of C is computed by the same
// sequence of operations whatever GOMAXPROCS is, so results repeat bit for
// bit on one machine and dispatch. Sgemm panics when a slice is too short for
// its dimensions. It is FP32.Sgemm.
func Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	FP32.Sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

// Sgemm computes the product as the function Sgemm does, with p's products.
func (p Precision) Sgemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkGemm("Sgemm", transA, transB, m, n, k, lda, ldb, ldc)
	checkLen("Sgemm", "A", len(a), 0, 1, matrixLen(transA, m, k, lda))
	checkLen("Sgemm", "B", len(b), 0, 1, matrixLen(transB, k, n, ldb))
	checkLen("Sgemm", "C", len(c), 0, 1, matrixLen(false, m, n, ldc))
	p.variant().gemm(&gemmArgs{
		transA: transA, transB: transB, m: m, n: n, k: k,
		alpha: alpha, beta: beta,
		a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc,
	}, true)
}

// SgemmBias computes C = alpha*op(A)*op(B) + bias as Sgemm does with beta 0,
// bias a row of n values added to every row of C (a linear layer's bias).
// The micro-kernels add the bias as they store the first block of each
// tile's product, instead of a pass of its own over C that the product then
// reads back: the result is the same as filling C with the bias and calling
// Sgemm with beta 1, bit for bit. It is FP32.SgemmBias.
func SgemmBias(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, bias, c []float32, ldc int) {
	FP32.SgemmBias(transA, transB, m, n, k, alpha, a, lda, b, ldb, bias, c, ldc)
}

// SgemmBias computes the product as the function SgemmBias does, with p's
// products.
func (p Precision) SgemmBias(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, bias, c []float32, ldc int) {
	checkGemm("SgemmBias", transA, transB, m, n, k, lda, ldb, ldc)
	checkLen("SgemmBias", "A", len(a), 0, 1, matrixLen(transA, m, k, lda))
	checkLen("SgemmBias", "B", len(b), 0, 1, matrixLen(transB, k, n, ldb))
	checkLen("SgemmBias", "C", len(c), 0, 1, matrixLen(false, m, n, ldc))
	checkLen("SgemmBias", "bias", len(bias), 0, 1, n)
	p.variant().gemm(&gemmArgs{
		transA: transA, transB: transB, m: m, n: n, k: k,
		alpha: alpha, beta: 0,
		a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc, bias: bias[:n],
	}, true)
}

// SgemmBatched computes batch independent products
//
//	C[i] = alpha*op(A[i])*op(B[i]) + beta*C[i]   for i in [0, batch)
//
// as Sgemm does, where matrix i of A starts at a[i*strideA], of B at
// b[i*strideB] and of C at c[i*strideC]. A stride of 0 for A or B uses one
// matrix for the whole batch. The C matrices must not share elements (they
// may interleave, for instance one per attention head in the columns of a
// wider matrix). It is FP32.SgemmBatched.
func SgemmBatched(batch int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda, strideA int, b []float32, ldb, strideB int, beta float32, c []float32, ldc, strideC int) {
	FP32.SgemmBatched(batch, transA, transB, m, n, k, alpha, a, lda, strideA, b, ldb, strideB, beta, c, ldc, strideC)
}

// SgemmBatched computes the products as the function SgemmBatched does,
// with p's products.
func (p Precision) SgemmBatched(batch int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda, strideA int, b []float32, ldb, strideB int, beta float32, c []float32, ldc, strideC int) {
	checkGemm("SgemmBatched", transA, transB, m, n, k, lda, ldb, ldc)
	if batch < 0 || strideA < 0 || strideB < 0 || strideC < 0 {
		panic(fmt.Sprintf("kernels: SgemmBatched: negative batch or stride (batch %d, strides %d, %d, %d)", batch, strideA, strideB, strideC))
	}
	if batch == 0 || m == 0 || n == 0 {
		return
	}
	if strideC == 0 && batch > 1 {
		panic("kernels: SgemmBatched: strideC is 0: the C matrices would share elements")
	}
	checkLen("SgemmBatched", "A", len(a), strideA, batch, matrixLen(transA, m, k, lda))
	checkLen("SgemmBatched", "B", len(b), strideB, batch, matrixLen(transB, k, n, ldb))
	checkLen("SgemmBatched", "C", len(c), strideC, batch, matrixLen(false, m, n, ldc))
	v := p.variant()
	g := gemmArgs{
		transA: transA, transB: transB, m: m, n: n, k: k,
		alpha: alpha, beta: beta, lda: lda, ldb: ldb, ldc: ldc,
	}
	if k == 0 || alpha == 0 {
		// A and B are not read (and may be empty).
		for i := 0; i < batch; i++ {
			g.c = c[i*strideC:]
			scaleC(&g)
		}
		return
	}
	threads := Threads()
	if batch == 1 || threads == 1 || batch < threads && 2*m*n*k >= parallelFlops {
		// Few large products: parallelize inside each one.
		for i := 0; i < batch; i++ {
			g.a, g.b, g.c = a[i*strideA:], b[i*strideB:], c[i*strideC:]
			v.gemm(&g, true)
		}
		return
	}
	t := batchTasks.get()
	t.v, t.g = v, g
	t.a, t.strideA, t.b, t.strideB, t.c, t.strideC = a, strideA, b, strideB, c, strideC
	t.batch, t.parts = batch, min(batch, 4*threads)
	runTasks(t.parts, threads, t)
	*t = batchTask{}
	batchTasks.put(t)
}

// SgemmBatchedAt computes batch independent products as SgemmBatched does,
// where matrix i of A starts at a[offA[i]], of B at b[offB[i]] and of C at
// c[offC[i]]: the operands may be any strided views whose rows are lda, ldb
// and ldc apart (the heads of attention read in place from the tensor that
// holds queries, keys and values side by side, and written in place into
// the tokens' rows). The C matrices must not share elements; the caller
// ensures it (it is not checked). It is FP32.SgemmBatchedAt.
func SgemmBatchedAt(batch int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, offA []int, b []float32, ldb int, offB []int, beta float32, c []float32, ldc int, offC []int) {
	FP32.SgemmBatchedAt(batch, transA, transB, m, n, k, alpha, a, lda, offA, b, ldb, offB, beta, c, ldc, offC)
}

// SgemmBatchedAt computes the products as the function SgemmBatchedAt does,
// with p's products.
func (p Precision) SgemmBatchedAt(batch int, transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, offA []int, b []float32, ldb int, offB []int, beta float32, c []float32, ldc int, offC []int) {
	checkGemm("SgemmBatchedAt", transA, transB, m, n, k, lda, ldb, ldc)
	if batch < 0 || len(offA) < batch || len(offB) < batch || len(offC) < batch {
		panic(fmt.Sprintf("kernels: SgemmBatchedAt: batch %d with %d, %d, %d offsets", batch, len(offA), len(offB), len(offC)))
	}
	if batch == 0 || m == 0 || n == 0 {
		return
	}
	for i := 0; i < batch; i++ {
		if offA[i] < 0 || offB[i] < 0 || offC[i] < 0 {
			panic(fmt.Sprintf("kernels: SgemmBatchedAt: negative offset for product %d", i))
		}
		checkLen("SgemmBatchedAt", "A", len(a)-offA[i], 0, 1, matrixLen(transA, m, k, lda))
		checkLen("SgemmBatchedAt", "B", len(b)-offB[i], 0, 1, matrixLen(transB, k, n, ldb))
		checkLen("SgemmBatchedAt", "C", len(c)-offC[i], 0, 1, matrixLen(false, m, n, ldc))
	}
	v := p.variant()
	g := gemmArgs{
		transA: transA, transB: transB, m: m, n: n, k: k,
		alpha: alpha, beta: beta, lda: lda, ldb: ldb, ldc: ldc,
	}
	threads := Threads()
	if batch == 1 || threads == 1 || batch < threads && 2*m*n*k >= parallelFlops {
		for i := 0; i < batch; i++ {
			g.a, g.b, g.c = a[offA[i]:], b[offB[i]:], c[offC[i]:]
			v.gemm(&g, true)
		}
		return
	}
	t := batchTasks.get()
	t.v, t.g = v, g
	t.a, t.b, t.c = a, b, c
	t.offA, t.offB, t.offC = offA, offB, offC
	t.batch, t.parts = batch, min(batch, 4*threads)
	runTasks(t.parts, threads, t)
	*t = batchTask{}
	batchTasks.put(t)
}

// batchTask runs a contiguous range of the products of a batch.
type batchTask struct {
	v                         *sgemmVariant
	g                         gemmArgs
	a, b, c                   []float32
	strideA, strideB, strideC int
	offA, offB, offC          []int // per product, when set (SgemmBatchedAt)
	batch, parts              int
}

func (t *batchTask) runTask(part, _ int) {
	g := t.g
	p := plans.get()
	for i := part * t.batch / t.parts; i < (part+1)*t.batch/t.parts; i++ {
		if t.offA != nil {
			g.a, g.b, g.c = t.a[t.offA[i]:], t.b[t.offB[i]:], t.c[t.offC[i]:]
		} else {
			g.a, g.b, g.c = t.a[i*t.strideA:], t.b[i*t.strideB:], t.c[i*t.strideC:]
		}
		p.gemm(t.v, &g, 1)
	}
	plans.put(p)
}

var batchTasks freeList[batchTask]

func checkGemm(fn string, transA, transB bool, m, n, k, lda, ldb, ldc int) {
	if m < 0 || n < 0 || k < 0 {
		panic(fmt.Sprintf("kernels: %s: negative dimension (m %d, n %d, k %d)", fn, m, n, k))
	}
	// The stored matrices: A is m×k or k×m, B is k×n or n×k, C is m×n.
	colsA, colsB := k, n
	if transA {
		colsA = m
	}
	if transB {
		colsB = k
	}
	if lda < max(1, colsA) {
		panic(fmt.Sprintf("kernels: %s: lda %d < %d columns of the stored A", fn, lda, colsA))
	}
	if ldb < max(1, colsB) {
		panic(fmt.Sprintf("kernels: %s: ldb %d < %d columns of the stored B", fn, ldb, colsB))
	}
	if ldc < max(1, n) {
		panic(fmt.Sprintf("kernels: %s: ldc %d < %d columns of C", fn, ldc, n))
	}
}

// matrixLen is the number of elements a stored matrix spans: op(X) is
// rows×cols, stored transposed when trans is set, ld apart.
func matrixLen(trans bool, rows, cols, ld int) int {
	if trans {
		rows, cols = cols, rows
	}
	if rows == 0 || cols == 0 {
		return 0
	}
	return (rows-1)*ld + cols
}

// checkLen panics unless a slice of length got holds count matrices of span
// elements, stride apart.
func checkLen(fn, name string, got, stride, count, span int) {
	if span == 0 || count == 0 {
		return
	}
	if need := (count-1)*stride + span; got < need {
		panic(fmt.Sprintf("kernels: %s: len(%s) = %d, need %d", fn, name, got, need))
	}
}

// gemmArgs are the arguments of one product, already checked.
type gemmArgs struct {
	transA, transB bool
	m, n, k        int
	alpha, beta    float32
	a              []float32
	lda            int
	b              []float32
	ldb            int
	c              []float32
	ldc            int
	bias           []float32 // added to every row of C (SgemmBias); beta is then 0
}

// microKernel is the signature of the register-tiled kernels: see
// sgemm14x32Go for the contract.
type microKernel func(k int, a []float32, rs, ks int, b, c []float32, ldc int, alpha, beta float32, bias []float32, rows, cols int)

// tileKernel is a micro-kernel for tiles of up to mr rows, with its plain-Go
// twin.
type tileKernel struct {
	mr     int
	kernel microKernel
	twin   microKernel
}

// sgemmVariant is one implementation of Sgemm: micro-kernels for tiles of
// nr columns and the cache blocking around them.
type sgemmVariant struct {
	name      string
	env       string // the cpu switch that turns the variant off
	supported bool   // the CPU can run it
	nr        int
	kc        int // largest block along k: an mr×kc A panel stays in L1
	nc        int // largest block along n: the packed kc×nc B block stays in L2 or L3
	// kernels lists the kernels from the tallest tile, mr rows, down. All
	// compute each element by the same operations: the shorter ones only
	// spare the work of the missing rows in the last panel of a matrix.
	kernels []tileKernel
	// packBPlain and packBTrans, when set, pack full panels from a plain or
	// a transposed B: see packB32Go and packBTrans32Go.
	packBPlain func(dst, src []float32, ldb, rows, panels, pstride int)
	packBTrans func(dst, src []float32, ldb, k16, cols int)
	// bf16, when set, makes the variant one of bfloat16 products: A and B
	// are packed as pairs and the kernels take pairs (see bf16.go).
	bf16   *bf16Packers
	mr     int
	byRows []tileKernel // byRows[r]: the shortest kernel for r rows
}

// newVariant completes a variant from its kernel table.
func newVariant(v sgemmVariant) *sgemmVariant {
	v.mr = v.kernels[0].mr
	v.byRows = make([]tileKernel, v.mr+1)
	for r := 1; r <= v.mr; r++ {
		for _, k := range v.kernels {
			if k.mr >= r {
				v.byRows[r] = k
			}
		}
	}
	return &v
}

// goVariant is the plain-Go fallback, always supported.
var goVariant = newVariant(sgemmVariant{
	name: "go", supported: true,
	nr: 16, kc: 256, nc: 4096,
	kernels: []tileKernel{{mr: 4, kernel: sgemm4x16Plain, twin: sgemm4x16Go}},
})

// sgemmVariants lists every variant in order of preference.
var sgemmVariants = append(archVariants(), goVariant)

// activeSgemm is the variant Sgemm uses: the first the CPU supports and the
// environment does not turn off.
var activeSgemm = chooseSgemm()

// Variant is the name of the float32 product in use: "avx512", "avx2" or
// "go". The variants block k differently, so their results differ in the
// last bits: runs whose numbers must agree bit for bit record it.
func Variant() string { return activeSgemm.name }

func chooseSgemm() *sgemmVariant {
	for _, v := range sgemmVariants {
		if v.supported && !cpu.Off(v.env) {
			return v
		}
	}
	return goVariant
}

// parallelFlops is the work (2mnk) below which a product runs on one
// goroutine on two cores: splitting it would cost more than it saves.
const parallelFlops = 1 << 23

// splitFlops is the work below which a product runs on one goroutine when
// threads share it: parallelFlops on two cores, less on more (down to an
// eighth), since a split saves more of the time the more cores share it
// while a parallel call costs little more (about 0.5 us and 40 ns per
// further goroutine; see docs/ENGINE.md, "On more cores").
func splitFlops(threads int) int {
	return max(parallelFlops*2/max(threads, 1), parallelFlops/8)
}

// gemm computes the product described by g, on several goroutines when
// parallel is set and the product is large enough.
func (v *sgemmVariant) gemm(g *gemmArgs, parallel bool) {
	threads := Threads()
	if !parallel || 2*g.m*g.n*g.k < splitFlops(threads) {
		threads = 1
	}
	p := plans.get()
	p.gemm(v, g, threads)
	plans.put(p)
}

// gemm computes the product described by g with the plan's buffers.
func (p *gemmPlan) gemm(v *sgemmVariant, g *gemmArgs, threads int) {
	if g.m == 0 || g.n == 0 {
		return
	}
	if g.k == 0 || g.alpha == 0 {
		scaleC(g)
		return
	}
	p.init(v, g, threads)
	p.run()
	p.v, p.g = nil, gemmArgs{}
}

// gemmPlan runs one product. With many rows, it is a sequence of parallel
// phases; for each block of columns [jc, jc+nc) and of k [pc, pc+kc):
//
//  1. pack the kc×nc block of op(B) once, into nr-wide panels shared by all
//     tasks (tasks split the packing);
//  2. compute C[:, jc:jc+nc] += the block's product, the tasks splitting C
//     into a grid of chunks of whole micro-tiles. Each task walks its
//     chunk an mr-row panel at a time: it packs the A panel (it then stays
//     in L1) and runs the micro-kernel against each B panel in turn.
//
// With few rows, each task instead computes a range of columns of C over all
// of k, alone (see runColumns). The blocks along k depend on k alone, never
// on the split, so every element of C is computed by the same operations
// however many tasks there are and whichever way the product is split.
type gemmPlan struct {
	v     *sgemmVariant
	g     gemmArgs
	kcMax int // block length along k

	// The current block and phase.
	jc, nc, pc, kc int
	beta           float32
	packing        bool

	columns        bool   // tasks own columns of C: see init
	aDirect        bool   // full panels of a plain A are used in place
	spreadKey      [3]int // the arguments of the last spreadsInL1 (see spreads)
	spreadVal      bool
	bPack          []float32 // the packed B block
	packParts      int       // tasks packing B
	mStep, nStep   int       // chunk of C per compute task
	mParts, nParts int
	threads        int
	// The workspaces of the goroutines running tasks, by slot (see
	// tasker). The plan is kept for the next product of the same caller,
	// so a slot's buffers tend to be in its core's cache already.
	slots []workspace
}

var plans freeList[gemmPlan]

func (p *gemmPlan) init(v *sgemmVariant, g *gemmArgs, threads int) {
	p.v, p.g, p.threads = v, *g, threads
	if len(p.slots) < threads {
		p.slots = append(p.slots, make([]workspace, threads-len(p.slots))...)
	}
	p.kcMax = v.kBlock(g.k)
	mPanels := ceilDiv(g.m, v.mr)
	ncMax := min(v.nc, roundUp(g.n, v.nr))
	// A panel that meets at most a few B panels is read in place even when
	// its rows share cache sets: the copy, a pass over the panel from
	// memory, then costs more than the conflict misses it avoids (products
	// of 128 columns from cold operands: 4 to 9% faster in place on Zen 5;
	// with 24 B panels, 4% slower).
	p.aDirect = !g.transA && (ncMax <= 4*v.nr || p.spreads(v.mr, p.kcMax, g.lda))
	// Chunks for the compute phase: rows of whole A panels, about 16 per
	// thread so that they balance even when a thread is held up (a chunk
	// costs only an atomic increment: B is shared and each A panel is
	// packed once anyway).
	p.mStep = max(1, mPanels/(16*threads)) * v.mr
	p.mParts = ceilDiv(g.m, p.mStep)
	p.nParts, p.nStep = 1, ncMax
	if threads > 1 && p.mParts < 4*threads {
		// Too few panels of rows to keep every thread busy: the chunks
		// also split the columns of the block, whole nr-wide panels, into
		// a grid of about 4 chunks per thread.
		p.nStep = roundUp(ceilDiv(ncMax, ceilDiv(4*threads, p.mParts)), v.nr)
		p.nParts = ceilDiv(ncMax, p.nStep)
	}
	p.columns = false
	if threads > 1 && mPanels < 16*threads {
		// Few rows: each task may instead take columns of C and compute
		// them alone, over all of k, packing its own part of B (A is
		// small, so every task reading it costs little). There are no
		// phase barriers, and the tasks' packing, which streams B from
		// memory, overlaps the others' computing instead of all threads
		// packing at once. Columns of at least 2nr keep the reads of A
		// paid for, so a narrow C has few of them: then the grid above,
		// which splits rows too, is used when it balances better.
		nStep := max(2*v.nr, roundUp(ceilDiv(g.n, 4*threads), v.nr))
		nParts := ceilDiv(g.n, nStep)
		if balance(nParts, threads) >= balance(p.mParts*p.nParts, threads) {
			p.columns = true
			p.mParts, p.mStep = 1, g.m
			p.nStep, p.nParts = nStep, nParts
			return
		}
	}
	if need := v.kSteps(p.kcMax) * ncMax; len(p.bPack) < need {
		p.bPack = make([]float32, need)
	}
}

// spreads is spreadsInL1, remembered for the last arguments: the small
// products of attention heads ask it for the same few shapes over and over,
// and for a 50×50 head it costs a few per cent of the product.
func (p *gemmPlan) spreads(rows, kc, ld int) bool {
	if k := [3]int{rows, kc, ld}; k != p.spreadKey {
		p.spreadKey, p.spreadVal = k, spreadsInL1(rows, kc, ld)
	}
	return p.spreadVal
}

// balance is the share of threads' time busy when tasks equal tasks are
// handed out to them: tasks / (threads * rounds).
func balance(tasks, threads int) float64 {
	return float64(tasks) / float64(threads*ceilDiv(tasks, threads))
}

func (p *gemmPlan) run() {
	g, v := &p.g, p.v
	if p.columns {
		runTasks(p.nParts, p.threads, p)
		return
	}
	for p.jc = 0; p.jc < g.n; p.jc += v.nc {
		p.nc = min(v.nc, g.n-p.jc)
		panels := ceilDiv(p.nc, v.nr)
		for p.pc = 0; p.pc < g.k; p.pc += p.kcMax {
			p.kc = min(p.kcMax, g.k-p.pc)
			p.beta = g.beta
			if p.pc > 0 {
				p.beta = 1
			}
			p.packing = true
			p.packParts = min(panels, 4*p.threads)
			if !g.transB {
				p.packParts = min(p.kc, 4*p.threads)
			}
			runTasks(p.packParts, p.threads, p)
			p.packing = false
			runTasks(p.mParts*p.nParts, p.threads, p)
		}
	}
}

func (p *gemmPlan) runTask(i, slot int) {
	v, g := p.v, &p.g
	if p.columns {
		p.runColumns(i, p.workspace(slot))
		return
	}
	if p.packing {
		v.packB(p.bPack, g, p.pc, p.kc, p.jc, p.nc, i, p.packParts)
		return
	}
	mi, ni := i/p.nParts, i%p.nParts
	i0, i1 := mi*p.mStep, min((mi+1)*p.mStep, g.m)
	j0, j1 := ni*p.nStep, min((ni+1)*p.nStep, p.nc)
	ws := p.workspace(slot)
	if need := v.aPanelLen(p.kcMax); len(ws.a) < need {
		ws.a = make([]float32, need)
	}
	kc, mr, nr := p.kc, v.mr, v.nr
	steps := v.kSteps(kc)
	for ir := i0; ir < i1; ir += mr {
		rows := min(mr, i1-ir)
		tk := v.byRows[rows]
		a, rs, ks := p.panelA(ws.a, ir, rows, tk.mr, p.pc, kc)
		kernel := tk.kernel
		for jr := j0; jr < j1; jr += nr {
			cols := min(nr, j1-jr)
			var bias []float32
			if g.bias != nil && p.pc == 0 {
				bias = g.bias[p.jc+jr:]
			}
			kernel(steps, a, rs, ks, p.bPack[jr*steps:], g.c[ir*g.ldc+p.jc+jr:], g.ldc,
				g.alpha, p.beta, bias, rows, cols)
		}
	}
}

// workspace returns the workspace of the goroutine in slot.
func (p *gemmPlan) workspace(slot int) *workspace {
	return &p.slots[slot]
}

// runColumns computes the columns [i*nStep, (i+1)*nStep) of C, over all
// of k, with a B block of its own.
func (p *gemmPlan) runColumns(i int, ws *workspace) {
	v, g := p.v, &p.g
	j0, j1 := i*p.nStep, min((i+1)*p.nStep, g.n)
	if need := v.aPanelLen(p.kcMax); len(ws.a) < need {
		ws.a = make([]float32, need)
	}
	if need := v.kSteps(p.kcMax) * roundUp(min(v.nc, j1-j0), v.nr); len(ws.b) < need {
		ws.b = make([]float32, need)
	}
	for jc := j0; jc < j1; jc += v.nc {
		nc := min(v.nc, j1-jc)
		for pc := 0; pc < g.k; pc += p.kcMax {
			kc := min(p.kcMax, g.k-pc)
			beta := g.beta
			if pc > 0 {
				beta = 1
			}
			v.packB(ws.b, g, pc, kc, jc, nc, 0, 1)
			steps := v.kSteps(kc)
			for ir := 0; ir < g.m; ir += v.mr {
				rows := min(v.mr, g.m-ir)
				tk := v.byRows[rows]
				a, rs, ks := p.panelA(ws.a, ir, rows, tk.mr, pc, kc)
				for jr := 0; jr < nc; jr += v.nr {
					cols := min(v.nr, nc-jr)
					var bias []float32
					if g.bias != nil && pc == 0 {
						bias = g.bias[jc+jr:]
					}
					tk.kernel(steps, a, rs, ks, ws.b[jr*steps:], g.c[ir*g.ldc+jc+jr:], g.ldc,
						g.alpha, beta, bias, rows, cols)
				}
			}
		}
	}
}

// scaleC sets C = beta*C, or C = 0 when beta is 0 (the bias, with one).
func scaleC(g *gemmArgs) {
	for i := 0; i < g.m; i++ {
		row := g.c[i*g.ldc : i*g.ldc+g.n]
		if g.bias != nil {
			copy(row, g.bias)
		} else if g.beta == 0 {
			clear(row)
		} else if g.beta != 1 {
			for j := range row {
				row[j] *= g.beta
			}
		}
	}
}

// workspace holds the packed A panel of one running task, and its B block
// when it has one of its own.
type workspace struct {
	a, b []float32
}

// kBlock returns the block length along k: k is cut into ceil(k/kc) nearly
// equal blocks (of an even length for pairs, so that only the last block
// may end with a half pair). It depends on k alone, so every element of C
// sums its products in the same order whichever chunk of C computes it.
func (v *sgemmVariant) kBlock(k int) int {
	kc := ceilDiv(k, ceilDiv(k, v.kc))
	if v.bf16 != nil {
		kc = roundUp(kc, 2)
	}
	return kc
}

// spreadsInL1 reports whether rows rows of kc floats, ld floats apart, fit in
// L1 together with no cache set holding more than a quarter of its ways (a
// 64-set, 8-way L1 with 64-byte lines, as on current x86 cores). Each line
// counts once, also where rows share lines (ld < kc + 16: contiguous rows
// are one run of memory, whose lines fill the sets in turn).
func spreadsInL1(rows, kc, ld int) bool {
	const sets, lineFloats, maxPerSet = 64, 16, 2
	var count [sets]int
	next := 0 // the first line not yet counted
	for i := 0; i < rows; i++ {
		first := i * ld / lineFloats
		last := (i*ld+kc-1)/lineFloats + 1 // a row may straddle one more line
		for l := max(first, next); l <= last; l++ {
			s := l % sets
			if count[s]++; count[s] > maxPerSet {
				return false
			}
		}
		next = max(next, last+1)
	}
	return true
}

// aPanelLen is the length of a buffer that holds any A panel that panelA
// packs from a block of kc along k.
func (v *sgemmVariant) aPanelLen(kc int) int {
	if v.bf16 != nil {
		steps := v.kSteps(kc)
		return max(v.mr*aPitch(steps), 16*steps) // see panelPairs
	}
	return v.mr * aPitch(kc)
}

// aPitch is the distance between rows of a packed A panel: the block length
// padded so that the rows fall into different cache sets.
func aPitch(kc int) int {
	return roundUp(kc, 16) + 16
}

// panelA returns the A micro-panel for rows [ir, ir+rows) and k range
// [pc, pc+kc) with its row and k strides, for a kernel that reads kmr ≥ rows
// rows. A is used in place when those rows exist and either A is transposed
// (each k step reads kmr consecutive values) or its rows, lda apart, fall
// into different L1 sets; otherwise the rows are copied into buf, padded with
// zero rows.
func (p *gemmPlan) panelA(buf []float32, ir, rows, kmr, pc, kc int) (a []float32, rs, ks int) {
	if p.v.bf16 != nil {
		return p.panelPairs(buf, ir, rows, kmr, pc, kc)
	}
	g, mr := &p.g, p.v.mr
	// The kernel reads kmr rows: in place, they must all exist.
	inPlace := ir+kmr <= g.m
	if g.transA {
		if inPlace {
			return g.a[pc*g.lda+ir:], 1, g.lda
		}
		// k-major: element (i, p) at buf[q*mr+i].
		for q := 0; q < kc; q++ {
			dst := buf[q*mr : q*mr+mr]
			copy(dst, g.a[(pc+q)*g.lda+ir:(pc+q)*g.lda+ir+rows])
			clear(dst[rows:])
		}
		return buf, 1, mr
	}
	if inPlace && p.aDirect {
		return g.a[ir*g.lda+pc:], g.lda, 1
	}
	// Row-major: element (i, p) at buf[i*pitch+p].
	pitch := aPitch(kc)
	for i := 0; i < mr; i++ {
		dst := buf[i*pitch : i*pitch+kc]
		if i < rows {
			copy(dst, g.a[(ir+i)*g.lda+pc:(ir+i)*g.lda+pc+kc])
		} else {
			clear(dst)
		}
	}
	return buf, pitch, 1
}

// packB copies part of the kc×nc block of op(B) at (pc, jc) into buf as
// nr-column panels: panel q holds columns [q*nr, q*nr+nr) with element
// (p, j) at buf[q*nr*kc+p*nr+j]; columns past nc are zero. The block is
// split into parts, of which this call packs part: ranges of rows of a plain
// B (read in order, a whole row at a time), ranges of panels of a transposed
// one (each panel reads nr rows of the stored B in order).
func (v *sgemmVariant) packB(buf []float32, g *gemmArgs, pc, kc, jc, nc, part, parts int) {
	if v.bf16 != nil {
		v.packBPairs(buf, g, pc, kc, jc, nc, part, parts)
		return
	}
	nr := v.nr
	panels := ceilDiv(nc, nr)
	full := nc / nr // panels with nr columns
	if !g.transB {
		p0, p1 := part*kc/parts, (part+1)*kc/parts
		if p0 == p1 {
			return
		}
		if v.packBPlain != nil && full > 0 {
			v.packBPlain(buf[p0*nr:], g.b[(pc+p0)*g.ldb+jc:], g.ldb, p1-p0, full, kc*nr)
		} else {
			full = 0
		}
		for q := full; q < panels; q++ {
			cols := min(nr, nc-q*nr)
			for p := p0; p < p1; p++ {
				src := g.b[(pc+p)*g.ldb+jc+q*nr:]
				dst := buf[q*nr*kc+p*nr : q*nr*kc+p*nr+nr]
				copy(dst, src[:cols])
				clear(dst[cols:])
			}
		}
		return
	}
	for q := part * panels / parts; q < (part+1)*panels/parts; q++ {
		cols := min(nr, nc-q*nr)
		panel := buf[q*nr*kc : (q+1)*nr*kc]
		j := jc + q*nr
		p0 := 0
		if v.packBTrans != nil && kc >= 16 {
			p0 = kc &^ 15
			v.packBTrans(panel, g.b[j*g.ldb+pc:], g.ldb, p0, cols)
		}
		if cols < nr {
			clear(panel[p0*nr:])
		}
		for jj := 0; jj < cols; jj++ {
			src := g.b[(j+jj)*g.ldb+pc+p0 : (j+jj)*g.ldb+pc+kc]
			for p, x := range src {
				panel[(p0+p)*nr+jj] = x
			}
		}
	}
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

func roundUp(a, b int) int { return ceilDiv(a, b) * b }
