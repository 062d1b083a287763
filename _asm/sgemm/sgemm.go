// Package sgemm generates the amd64 assembly of package kernels: the sgemm
// micro-kernels for AVX-512 and AVX2+FMA and the packing of B, the bfloat16
// kernels and packers for AVX512_BF16 (bf16.go; evex.go encodes the
// instructions Go's assembler lacks) and the prefetch of strided rows
// (prefetch.go), with their Go declarations, the plain-Go twin of every
// kernel and packer and the tables that list the kernels of each variant.
package sgemm

import (
	"fmt"
	"math/bits"

	"github.com/hyperat/hyperat/_asm/gen"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

type isa int

const (
	isaAVX512 isa = iota
	isaAVX2
	isaAVX512BF16 // bfloat16 pairs, VDPBF16PS (see bf16.go)
)

// kernelSpec describes one register-tiled micro-kernel: an mr×(16*nv) tile of
// C for AVX-512 (nv zmm vectors per row) or an mr×(8*nv) tile for AVX2.
type kernelSpec struct {
	isa    isa
	mr, nv int
	unroll int // k steps per loop iteration, a power of two
}

func (s kernelSpec) nr() int {
	if s.isa == isaAVX2 {
		return 8 * s.nv
	}
	return 16 * s.nv
}

// prefix names the kernels by what they compute: sgemm (float32), sbgemm
// (bfloat16 products summed in float32).
func (s kernelSpec) prefix() string {
	if s.isa == isaAVX512BF16 {
		return "sbgemm"
	}
	return "sgemm"
}

func (s kernelSpec) name() string {
	suffix := "AVX512"
	if s.isa == isaAVX2 {
		suffix = "AVX2"
	}
	return fmt.Sprintf("%s%dx%d%s", s.prefix(), s.mr, s.nr(), suffix)
}

// twinName is the name of the plain-Go kernel with the same tile.
func (s kernelSpec) twinName() string {
	return fmt.Sprintf("%s%dx%dGo", s.prefix(), s.mr, s.nr())
}

// doc is the doc comment of the kernel name (the assembly or its twin).
func (s kernelSpec) doc(name string) []string {
	if s.isa == isaAVX512BF16 {
		return bf16KernelDoc(name, s.mr, s.nr())
	}
	return kernelDoc(name, s.mr, s.nr())
}

// kernelFamily is the set of kernels of one variant: the main tile, then
// shorter ones for the last rows of a matrix, so that a remainder of a few
// rows does not cost a full tile.
type kernelFamily struct {
	table string // name of the Go table listing the kernels
	specs []kernelSpec
}

var families = []kernelFamily{
	{table: "avx512Kernels", specs: []kernelSpec{
		{isa: isaAVX512, mr: 14, nv: 2, unroll: 4},
		{isa: isaAVX512, mr: 8, nv: 2, unroll: 4},
		{isa: isaAVX512, mr: 4, nv: 2, unroll: 4},
		{isa: isaAVX512, mr: 2, nv: 2, unroll: 4},
		{isa: isaAVX512, mr: 1, nv: 2, unroll: 4},
	}},
	{table: "avx2Kernels", specs: []kernelSpec{
		{isa: isaAVX2, mr: 6, nv: 2, unroll: 4},
		{isa: isaAVX2, mr: 4, nv: 2, unroll: 4},
		{isa: isaAVX2, mr: 2, nv: 2, unroll: 4},
		{isa: isaAVX2, mr: 1, nv: 2, unroll: 4},
	}},
	{table: "bf16Kernels", specs: []kernelSpec{
		{isa: isaAVX512BF16, mr: 14, nv: 2, unroll: 4},
		{isa: isaAVX512BF16, mr: 8, nv: 2, unroll: 4},
		{isa: isaAVX512BF16, mr: 4, nv: 2, unroll: 4},
		{isa: isaAVX512BF16, mr: 2, nv: 2, unroll: 4},
		{isa: isaAVX512BF16, mr: 1, nv: 2, unroll: 4},
	}},
}

// Build emits every kernel and packer into the assembly file.
func Build() {
	for _, f := range families {
		for _, s := range f.specs {
			switch s.isa {
			case isaAVX512, isaAVX512BF16:
				genKernelAVX512(s)
			case isaAVX2:
				genKernelAVX2(s)
			}
		}
	}
	for _, s := range packSpecs {
		genPackB(s)
		genPackBTrans(s)
	}
	genPackRowsBF16()
	genPackPairsBF16()
	genPackBTrans(packSpec{isa: isaAVX512BF16, nr: 32, blk: 16})
	genPrefetchRows()
}

const kernelSignature = "func(k int, a []float32, rs, ks int, b, c []float32, ldc int, alpha, beta float32, bias []float32, rows, cols int)"

func kernelDoc(name string, mr, nr int) []string {
	return []string{
		fmt.Sprintf("%s computes one rows×cols tile (rows ≤ %d, cols ≤ %d) of C from an", name, mr, nr),
		fmt.Sprintf("A micro-panel of %d rows, element (i, p) at a[i*rs+p*ks], and a packed", mr),
		fmt.Sprintf("B micro-panel, element (p, j) at b[p*%d+j]. It is:", nr),
		"",
		"	for i := 0; i < rows; i++ {",
		"		for j := 0; j < cols; j++ {",
		"			var s float32",
		"			for p := 0; p < k; p++ {",
		fmt.Sprintf("				s += a[i*rs+p*ks] * b[p*%d+j]", nr),
		"			}",
		"			switch {",
		"			case bias != nil:",
		"				c[i*ldc+j] = float32(alpha*s) + bias[j]",
		"			case beta == 0:",
		"				c[i*ldc+j] = alpha * s",
		"			default:",
		"				c[i*ldc+j] = alpha*s + beta*c[i*ldc+j]",
		"			}",
		"		}",
		"	}",
		"",
		"up to rounding: the assembly kernels add each product with a fused",
		fmt.Sprintf("multiply-add. It needs k ≥ 1, 1 ≤ rows ≤ %d and 1 ≤ cols ≤ %d; all %d rows", mr, nr, mr),
		fmt.Sprintf("of the A panel and all %d columns of the B panel are read, but only the", nr),
		"rows×cols tile of C is touched, and C is not read when beta is 0 or bias",
		"is not nil (bias, a row of at least cols values, then takes the place of",
		"beta*C: a linear layer's bias added as the tile is stored, the same bits",
		"as C filled with the bias and beta 1).",
	}
}

// Register use shared by both kernels.
var (
	regK     = RAX // k steps left in the tail loop
	regIter  = RCX // unrolled iterations left; then the mask shift count
	regA     = []Register{RSI, RDI, R8}
	regRS    = R9  // 4*rs: byte stride between A rows
	regRS3   = R10 // 12*rs
	regKS    = R11 // 4*ks: byte step along k in A
	regB     = RBX
	regC     = RDX
	regLDC   = R12 // 4*ldc
	regRows  = R13
	regCols  = R14
	regTmp   = RAX
	regBias  = RSI // the bias row, once the A registers are free
	rowGroup = 5   // A rows addressed from one base register
)

// aRow is the address of row i of the current A column, off bytes further.
func aRow(i int) Mem {
	base := regA[i/rowGroup]
	switch i % rowGroup {
	case 0:
		return Mem{Base: base}
	case 1:
		return Mem{Base: base, Index: regRS, Scale: 1}
	case 2:
		return Mem{Base: base, Index: regRS, Scale: 2}
	case 3:
		return Mem{Base: base, Index: regRS3, Scale: 1}
	default:
		return Mem{Base: base, Index: regRS, Scale: 4}
	}
}

// loadKernelArgs loads the arguments common to both kernels and sets up the
// A base registers. It leaves k in regK.
func loadKernelArgs(mr, nr int) {
	Load(Param("a").Base(), regA[0])
	Load(Param("rs"), regRS)
	SHLQ(U8(2), regRS)
	LEAQ(Mem{Base: regRS, Index: regRS, Scale: 2}, regRS3)
	Load(Param("ks"), regKS)
	SHLQ(U8(2), regKS)
	for g := 1; g*rowGroup < mr; g++ {
		Comment(fmt.Sprintf("A rows %d.. start 5 rows further", g*rowGroup))
		LEAQ(Mem{Base: regA[g-1], Index: regRS, Scale: 4}, regA[g])
		ADDQ(regRS, regA[g])
	}
	Load(Param("b").Base(), regB)
	Load(Param("c").Base(), regC)
	Load(Param("ldc"), regLDC)
	SHLQ(U8(2), regLDC)
	Load(Param("rows"), regRows)
	Load(Param("cols"), regCols)
	Comment("Fetch the C tile while the products are computed.")
	MOVQ(regC, regIter)
	for i := 0; i < mr; i++ {
		for off := 0; off < 4*nr; off += 64 {
			PREFETCHT0(Mem{Base: regIter, Disp: off})
		}
		if i < mr-1 {
			ADDQ(regLDC, regIter)
		}
	}
	Load(Param("k"), regK)
}

// kLoop emits the loop over k around step, unrolled by s.unroll; step(u)
// emits one k step that reads B at byte offset u*bStep from regB.
func kLoop(s kernelSpec, bStep int, step func(u int)) {
	shift := bits.TrailingZeros(uint(s.unroll))
	MOVQ(regK, regIter)
	SHRQ(U8(shift), regIter)
	ANDQ(U32(s.unroll-1), regK)
	TESTQ(regIter, regIter)
	JZ(LabelRef(s.name() + "_tail"))

	Label(s.name() + "_loop")
	for u := 0; u < s.unroll; u++ {
		step(u)
	}
	ADDQ(U32(s.unroll*bStep), regB)
	DECQ(regIter)
	JNZ(LabelRef(s.name() + "_loop"))

	Label(s.name() + "_tail")
	TESTQ(regK, regK)
	JZ(LabelRef(s.name() + "_store"))
	Label(s.name() + "_tailloop")
	step(0)
	ADDQ(U32(bStep), regB)
	DECQ(regK)
	JNZ(LabelRef(s.name() + "_tailloop"))

	Label(s.name() + "_store")
}

// advanceA moves the A base registers one step along k.
func advanceA(mr int) {
	for g := 0; g*rowGroup < mr; g++ {
		ADDQ(regKS, regA[g])
	}
}

// betaIsZero sets the flags so that JZ jumps when beta is +0 or -0.
func betaIsZero() {
	beta, err := Param("beta").Resolve()
	if err != nil {
		panic(err)
	}
	MOVL(beta.Addr, regTmp.As32())
	ANDL(U32(0x7fffffff), regTmp.As32())
}

// eachRow emits row(i) for every row of the tile, moving regC down one row
// of C between rows. On an edge tile it stops after regRows rows, jumping to
// the end of the kernel.
func eachRow(s kernelSpec, edge bool, row func(i int)) {
	for i := 0; i < s.mr; i++ {
		row(i)
		if i < s.mr-1 {
			if edge {
				DECQ(regRows)
				JZ(LabelRef(s.name() + "_done"))
			}
			ADDQ(regLDC, regC)
		}
	}
}

// addBetaC emits acc += beta*c, c a vector of C in memory or a register:
// one fused multiply-add, or for the bfloat16 kernels a product rounded
// before the sum (which their plain-Go twins compute the same, bit for bit).
// The latter uses tmp, which may be c.
func addBetaC(s kernelSpec, c Op, beta, tmp, acc VecPhysical) {
	if s.isa == isaAVX512BF16 {
		VMULPS(c, beta, tmp)
		VADDPS(tmp, acc, acc) // acc += beta * c
		return
	}
	VFMADD231PS(c, beta, acc) // acc += beta * c
}

// loadBias loads the bias row's address into regBias and sets the flags so
// that JNZ jumps when there is one.
func loadBias() {
	Load(Param("bias").Base(), regBias)
	TESTQ(regBias, regBias)
}

// storeFullTile emits the test for a full tile (jumping to the edge code
// otherwise) and its stores, C = alpha*acc + beta*C or, when beta is 0,
// alpha*acc, or with a bias alpha*acc + bias; then a jump to the end. cv(v)
// is vector v of the current C row, bv(v) of the bias row; tmp is a free
// register.
func storeFullTile(s kernelSpec, acc func(i, v int) VecPhysical, alpha, beta, tmp VecPhysical, cv, bv func(v int) Mem) {
	CMPQ(regRows, U32(s.mr))
	JNE(LabelRef(s.name() + "_edge"))
	CMPQ(regCols, U32(s.nr()))
	JNE(LabelRef(s.name() + "_edge"))

	Comment("Full tile.")
	loadBias()
	JNZ(LabelRef(s.name() + "_fullbias"))
	betaIsZero()
	JZ(LabelRef(s.name() + "_full0"))
	eachRow(s, false, func(i int) {
		for v := 0; v < s.nv; v++ {
			VMULPS(alpha, acc(i, v), acc(i, v))
			addBetaC(s, cv(v), beta, tmp, acc(i, v))
			VMOVUPS(acc(i, v), cv(v))
		}
	})
	JMP(LabelRef(s.name() + "_done"))

	Label(s.name() + "_full0")
	eachRow(s, false, func(i int) {
		for v := 0; v < s.nv; v++ {
			VMULPS(alpha, acc(i, v), acc(i, v))
			VMOVUPS(acc(i, v), cv(v))
		}
	})
	JMP(LabelRef(s.name() + "_done"))

	Label(s.name() + "_fullbias")
	eachRow(s, false, func(i int) {
		for v := 0; v < s.nv; v++ {
			VMULPS(alpha, acc(i, v), acc(i, v))
			VADDPS(bv(v), acc(i, v), acc(i, v)) // acc += bias, rounded once as acc + 1*C was
			VMOVUPS(acc(i, v), cv(v))
		}
	})
	JMP(LabelRef(s.name() + "_done"))
}

func genKernelAVX512(s kernelSpec) {
	const vec = 16
	nr := vec * s.nv
	if s.mr*s.nv+s.nv+1 > 32 || s.nv > 4 {
		panic(s.name() + ": tile needs too many registers")
	}
	TEXT(s.name(), NOSPLIT, kernelSignature)
	Doc(s.doc(s.name())...)
	Pragma("noescape")
	bf16 := s.isa == isaAVX512BF16

	zmm := func(i int) VecPhysical { return zmmRegs[i] }
	acc := func(i, v int) VecPhysical { return zmm(i*s.nv + v) }
	bv := func(v int) VecPhysical { return zmm(s.mr*s.nv + v) }

	loadKernelArgs(s.mr, nr)
	Comment("Clear the accumulators.")
	for i := 0; i < s.mr; i++ {
		for v := 0; v < s.nv; v++ {
			VPXORD(acc(i, v), acc(i, v), acc(i, v))
		}
	}

	kLoop(s, 4*nr, func(u int) {
		for v := 0; v < s.nv; v++ {
			VMOVUPS(Mem{Base: regB, Disp: 4 * (u*nr + v*vec)}, bv(v))
		}
		// Each A value is broadcast once into a register of its own and
		// read from there by the tile's nv products: one load per row
		// instead of nv, which on Zen 5 takes the fp32 kernel from about
		// 207 to 227 GFLOP/s per core (BenchmarkMicroKernel).
		ar := zmm(s.mr*s.nv + s.nv)
		for i := 0; i < s.mr; i++ {
			if bf16 {
				VPBROADCASTD(aRow(i), ar) // one pair
			} else {
				VBROADCASTSS(aRow(i), ar)
			}
			for v := 0; v < s.nv; v++ {
				if bf16 {
					opVDPBF16PS.emit(ar, bv(v), acc(i, v)) // acc += a[i] · b, pair by pair
				} else {
					VFMADD231PS(ar, bv(v), acc(i, v)) // acc += a[i] * b
				}
			}
		}
		advanceA(s.mr)
	})

	// After the loop the B registers are free: alpha, beta and a scratch
	// register live there (the scratch one may be past the B registers).
	alpha, beta := bv(0), bv(1)
	tmp := zmm(s.mr*s.nv + 2)
	if s.mr*s.nv+2 >= 32 {
		tmp = bv(2)
	}
	VBROADCASTSS(gen.ParamAddr("alpha"), alpha)
	VBROADCASTSS(gen.ParamAddr("beta"), beta)
	cv := func(v int) Mem { return Mem{Base: regC, Disp: 64 * v} }
	biasv := func(v int) Mem { return Mem{Base: regBias, Disp: 64 * v} }
	storeFullTile(s, acc, alpha, beta, tmp, cv, biasv)

	Label(s.name() + "_edge")
	Comment("Column masks: the low cols bits of a run of ones, 16 per vector.")
	masks := []Register{K1, K2, K3, K4}
	MOVQ(U32(64), regIter)
	SUBQ(regCols, regIter)
	MOVQ(I32(-1), regCols)
	SHRQ(CL, regCols)
	for v := 0; v < s.nv; v++ {
		KMOVW(regCols.As32(), masks[v])
		if v < s.nv-1 {
			SHRQ(U8(16), regCols)
		}
	}
	loadBias()
	JNZ(LabelRef(s.name() + "_edgebias"))
	betaIsZero()
	JZ(LabelRef(s.name() + "_edge0"))
	eachRow(s, true, func(i int) {
		for v := 0; v < s.nv; v++ {
			VMULPS(alpha, acc(i, v), acc(i, v))
			VMOVUPS_Z(cv(v), masks[v], tmp)
			addBetaC(s, tmp, beta, tmp, acc(i, v))
			VMOVUPS(acc(i, v), masks[v], cv(v))
		}
	})
	JMP(LabelRef(s.name() + "_done"))

	Label(s.name() + "_edgebias")
	eachRow(s, true, func(i int) {
		for v := 0; v < s.nv; v++ {
			VMULPS(alpha, acc(i, v), acc(i, v))
			VMOVUPS_Z(biasv(v), masks[v], tmp) // the masked load reads only the cols values
			VADDPS(tmp, acc(i, v), acc(i, v))
			VMOVUPS(acc(i, v), masks[v], cv(v))
		}
	})
	JMP(LabelRef(s.name() + "_done"))

	Label(s.name() + "_edge0")
	eachRow(s, true, func(i int) {
		for v := 0; v < s.nv; v++ {
			VMULPS(alpha, acc(i, v), acc(i, v))
			VMOVUPS(acc(i, v), masks[v], cv(v))
		}
	})

	Label(s.name() + "_done")
	VZEROUPPER()
	RET()
}

func genKernelAVX2(s kernelSpec) {
	const vec = 8
	nr := vec * s.nv
	if s.mr*s.nv+s.nv+1 > 16 || s.nv != 2 {
		panic(s.name() + ": tile does not fit the AVX2 registers")
	}
	TEXT(s.name(), NOSPLIT, kernelSignature)
	Doc(kernelDoc(s.name(), s.mr, nr)...)
	Pragma("noescape")

	ymm := func(i int) VecPhysical { return ymmRegs[i] }
	acc := func(i, v int) VecPhysical { return ymm(i*s.nv + v) }
	bv := func(v int) VecPhysical { return ymm(s.mr*s.nv + v) }
	bc := ymm(s.mr*s.nv + s.nv)

	loadKernelArgs(s.mr, nr)
	Comment("Clear the accumulators.")
	for i := 0; i < s.mr; i++ {
		for v := 0; v < s.nv; v++ {
			VXORPS(acc(i, v), acc(i, v), acc(i, v))
		}
	}

	kLoop(s, 4*nr, func(u int) {
		for v := 0; v < s.nv; v++ {
			VMOVUPS(Mem{Base: regB, Disp: 4 * (u*nr + v*vec)}, bv(v))
		}
		for i := 0; i < s.mr; i++ {
			VBROADCASTSS(aRow(i), bc)
			for v := 0; v < s.nv; v++ {
				VFMADD231PS(bv(v), bc, acc(i, v)) // acc += a[i] * b
			}
		}
		advanceA(s.mr)
	})

	// Four registers are free after the loop (two for B, one for the
	// broadcast, one spare).
	alpha, beta, tmp := bv(0), bv(1), bc
	cv := func(v int) Mem { return Mem{Base: regC, Disp: 32 * v} }
	biasv := func(v int) Mem { return Mem{Base: regBias, Disp: 32 * v} }
	VBROADCASTSS(gen.ParamAddr("alpha"), alpha)
	VBROADCASTSS(gen.ParamAddr("beta"), beta)
	storeFullTile(s, acc, alpha, beta, tmp, cv, biasv)

	Label(s.name() + "_edge")
	Comment("Scale by alpha first so that its register can hold a column mask.")
	for i := 0; i < s.mr; i++ {
		for v := 0; v < s.nv; v++ {
			VMULPS(alpha, acc(i, v), acc(i, v))
		}
	}
	Comment("Column masks: lane j of mask v is set when 8*v+j < cols.")
	mask := []VecPhysical{ymm(15), alpha}
	idx := laneIndex()
	MOVQ(regCols, X15)
	VPBROADCASTD(X15, Y15)
	VPCMPGTD(idx.Offset(32), Y15, mask[1]) // mask[1] = cols > 8+j
	VPCMPGTD(idx, Y15, mask[0])            // mask[0] = cols > j
	loadBias()
	JNZ(LabelRef(s.name() + "_edgebias"))
	betaIsZero()
	JZ(LabelRef(s.name() + "_edge0"))
	eachRow(s, true, func(i int) {
		for v := 0; v < s.nv; v++ {
			VMASKMOVPS(cv(v), mask[v], tmp)
			VFMADD231PS(tmp, beta, acc(i, v))
			VMASKMOVPS(acc(i, v), mask[v], cv(v))
		}
	})
	JMP(LabelRef(s.name() + "_done"))

	Label(s.name() + "_edgebias")
	eachRow(s, true, func(i int) {
		for v := 0; v < s.nv; v++ {
			VMASKMOVPS(biasv(v), mask[v], tmp) // the masked load reads only the cols values
			VADDPS(tmp, acc(i, v), acc(i, v))
			VMASKMOVPS(acc(i, v), mask[v], cv(v))
		}
	})
	JMP(LabelRef(s.name() + "_done"))

	Label(s.name() + "_edge0")
	eachRow(s, true, func(i int) {
		for v := 0; v < s.nv; v++ {
			VMASKMOVPS(acc(i, v), mask[v], cv(v))
		}
	})

	Label(s.name() + "_done")
	VZEROUPPER()
	RET()
}

var laneIndexMem *Mem

// laneIndex returns the table 0, 1, ..., 15 of int32 lane numbers.
func laneIndex() Mem {
	if laneIndexMem == nil {
		m := GLOBL("laneIndex", RODATA|NOPTR)
		for i := 0; i < 16; i++ {
			DATA(4*i, U32(i))
		}
		laneIndexMem = &m
	}
	return *laneIndexMem
}
