package vmath

import (
	"fmt"

	"github.com/hyperat/hyperat/_asm/gen"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The LayerNorm row kernels: the sums behind a row's mean and variance and
// behind its gradient, accumulated in float64 in sixteen lanes (element i in
// lane i % 16, the last partial block padded with zeros, the lanes added
// pairwise at the end) so that every variant rounds them the same way, and
// the elementwise passes, each operation rounded to float32 on its own.

// laneSums is the twins' pairwise addition of two sets of sixteen float64
// lanes, a and b, returning both sums.
func laneSums(a, b string) string {
	return fmt.Sprintf(`
	for w := 8; w > 0; w /= 2 {
		for i := 0; i < w; i++ {
			%[1]s[i] += %[1]s[i+w]
			%[2]s[i] += %[2]s[i+w]
		}
	}
	return %[1]s[0], %[2]s[0]
`, a, b)
}

func init() {
	kernels = append(kernels,
		kernel{
			name: "rowSums",
			sig:  "func(x []float32) (sum, sumSq float64)",
			intro: []string{
				"returns the sum of x and the sum of its squares, in float64",
				"(each square added with one rounding, as a fused multiply-add). It is:",
			},
			twin: `
	var s, q [16]float64
	for i := 0; i < (len(x)+15)/16*16; i++ {
		var v float64
		if i < len(x) {
			v = float64(x[i])
		}
		s[i%16] += v
		q[i%16] = math.FMA(v, v, q[i%16])
	}` + laneSums("s", "q"),
			avx512: genRowSumsAVX512,
			avx2:   genRowSumsAVX2,
		},
		kernel{
			name:  "normRow",
			sig:   "func(y, x, g, b []float32, m, s float32)",
			intro: []string{"sets y[i] = (x[i] - m) s g[i] + b[i], a LayerNorm row, for every i < len(x). It is:"},
			twin: `
	y, g, b = y[:len(x)], g[:len(x)], b[:len(x)]
	for i, v := range x {
		y[i] = float32(float32((v-m)*s)*g[i]) + b[i]
	}
`,
			outro:  []string{"It needs y, g and b at least as long as x; y may be x itself but not overlap it otherwise."},
			avx512: genNormRowAVX512,
			avx2:   genNormRowAVX2,
		},
		kernel{
			name: "normGradSums",
			sig:  "func(x, dy, g []float32, m, s float32) (sg, sgx float64)",
			intro: []string{
				"returns, for a LayerNorm row with mean m and inverse deviation s, the sums",
				"of t = dy g and of t (x - m) s, in float64. It is:",
			},
			twin: `
	var lt, ltx [16]float64
	for i := 0; i < (len(x)+15)/16*16; i++ {
		var xv, dv, gv float32
		if i < len(x) {
			xv, dv, gv = x[i], dy[i], g[i]
		}
		t := dv * gv
		lt[i%16] += float64(t)
		ltx[i%16] += float64(t * float32((xv-m)*s))
	}` + laneSums("lt", "ltx"),
			outro:  []string{"It needs dy and g at least as long as x."},
			avx512: genNormGradSumsAVX512,
			avx2:   genNormGradSumsAVX2,
		},
		kernel{
			name: "normGradRow",
			sig:  "func(dx, x, dy, g []float32, m, s, mg, mgx float32)",
			intro: []string{
				"sets dx[i] = s (dy[i] g[i] - mg - (x[i] - m) s mgx), the input gradient",
				"of a LayerNorm row, mg and mgx the means of normGradSums' sums. It is:",
			},
			twin: `
	dx, dy, g = dx[:len(x)], dy[:len(x)], g[:len(x)]
	for i, v := range x {
		t := float32(dy[i]*g[i]) - mg
		h := float32((v - m) * s)
		dx[i] = s * (t - float32(h*mgx))
	}
`,
			outro:  []string{"It needs dx, dy and g at least as long as x; dx may be x or dy itself but not overlap them otherwise."},
			avx512: genNormGradRowAVX512,
			avx2:   genNormGradRowAVX2,
		},
	)
}

// softmaxGradKernel is the softmax's input gradient on a row: its sum is
// accumulated as the LayerNorm sums are (the products of two float32 are
// exact in float64, so the fused multiply-add rounds only the sum).
var softmaxGradKernel = kernel{
	name: "softmaxGradRow",
	sig:  "func(dx, y, dy []float32)",
	intro: []string{
		"sets dx = y (dy - s), s the sum of dy[i] y[i] (in float64, then rounded),",
		"the input gradient of a softmax row y. It is:",
	},
	twin: `
	var l [16]float64
	for i := 0; i < (len(y)+15)/16*16; i++ {
		var a, b float64
		if i < len(y) {
			a, b = float64(dy[i]), float64(y[i])
		}
		l[i%16] += a * b
	}
	for w := 8; w > 0; w /= 2 {
		for i := 0; i < w; i++ {
			l[i] += l[i+w]
		}
	}
	s := float32(l[0])
	dx, dy = dx[:len(y)], dy[:len(y)]
	for i, v := range y {
		dx[i] = v * (dy[i] - s)
	}
`,
	outro:  []string{"It needs dx and dy at least as long as y; dx may be y or dy itself but not overlap them otherwise."},
	avx512: genSoftmaxGradRowAVX512,
	avx2:   genSoftmaxGradRowAVX2,
}

func init() { kernels = append(kernels, softmaxGradKernel) }

func genSoftmaxGradRowAVX512(k kernel) {
	name := k.name + "AVX512"
	TEXT(name, NOSPLIT, k.sig)
	Pragma("noescape")
	Doc(k.doc(name)...)
	dx := Load(Param("dx").Base(), R11)
	y := Load(Param("y").Base(), RSI)
	dy := Load(Param("dy").Base(), RDI)
	n := Load(Param("y").Len(), RCX)
	pass := rows512(name, n)
	Comment("Z8, Z9: lanes 0-7 and 8-15 of the sum of dy y.")
	VPXORQ(Z8, Z8, Z8)
	VPXORQ(Z9, Z9, Z9)
	pass("sum", func(mask Op) {
		at := func(base Register) Mem { return Mem{Base: base, Index: R8, Scale: 1} }
		load512(at(y), Z0, mask)
		load512(at(dy), Z1, mask)
		VCVTPS2PD(Y0, Z2)
		VCVTPS2PD(Y1, Z3)
		VFMADD231PD(Z2, Z3, Z8)
		VEXTRACTF64X4(U8(1), Z0, Y2)
		VEXTRACTF64X4(U8(1), Z1, Y3)
		VCVTPS2PD(Y2, Z2)
		VCVTPS2PD(Y3, Z3)
		VFMADD231PD(Z2, Z3, Z9)
	})
	laneSum512(Z8, Z9, Z3)
	VCVTSD2SS(X8, X8, X8)
	VBROADCASTSS(X8, Z31)
	pass("dx", func(mask Op) {
		at := func(base Register) Mem { return Mem{Base: base, Index: R8, Scale: 1} }
		load512(at(y), Z0, mask)
		load512(at(dy), Z1, mask)
		VSUBPS(Z31, Z1, Z1)
		VMULPS(Z1, Z0, Z0)
		store512(Z0, at(dx), mask)
	})
	VZEROUPPER()
	RET()
}

func genSoftmaxGradRowAVX2(k kernel) {
	name := k.name + "AVX2"
	TEXT(name, NOSPLIT, k.sig)
	Pragma("noescape")
	Doc(k.doc(name)...)
	dx := Load(Param("dx").Base(), R11)
	y := Load(Param("y").Base(), RSI)
	dy := Load(Param("dy").Base(), RDI)
	n := Load(Param("y").Len(), RCX)
	pass := rows256(name, n)
	acc := []VecPhysical{Y10, Y11, Y12, Y13}
	Comment("Y10-Y13: lanes 0-3, 4-7, 8-11, 12-15 of the sum of dy y.")
	for _, r := range acc {
		VXORPD(r, r, r)
	}
	pass("sum", func(h int, last bool) {
		load256(at256(y, h), Y0, h, last)
		load256(at256(dy, h), Y1, h, last)
		VCVTPS2PD(X0, Y2)
		VCVTPS2PD(X1, Y3)
		VFMADD231PD(Y2, Y3, acc[2*h])
		VEXTRACTF128(U8(1), Y0, X2)
		VEXTRACTF128(U8(1), Y1, X3)
		VCVTPS2PD(X2, Y2)
		VCVTPS2PD(X3, Y3)
		VFMADD231PD(Y2, Y3, acc[2*h+1])
	})
	laneSum256(acc)
	VCVTSD2SS(X10, X10, X10)
	VBROADCASTSS(X10, Y9)
	pass("dx", func(h int, last bool) {
		load256(at256(y, h), Y0, h, last)
		load256(at256(dy, h), Y1, h, last)
		VSUBPS(Y9, Y1, Y1)
		VMULPS(Y1, Y0, Y0)
		store256(Y0, at256(dx, h), h, last)
	})
	VZEROUPPER()
	RET()
}

// rows512 sets up a loop over blocks of sixteen floats of x (RCX of them,
// RBX left over, K1 their mask) and returns the function that emits it:
// body gets the offset of the block in bytes (R8) and, for the last partial
// block, the mask.
func rows512(name string, n Register) func(label string, body func(mask Op)) {
	MOVQ(n, RBX)
	ANDQ(U8(15), RBX)
	MOVL(U32(1), EDX)
	SHLXL(EBX, EDX, EDX)
	DECL(EDX)
	KMOVW(EDX, K1)
	SHRQ(U8(4), n)
	return func(label string, body func(mask Op)) {
		XORQ(R8, R8)
		MOVQ(n, R9)
		TESTQ(R9, R9)
		JZ(LabelRef(name + "_" + label + "_tail"))
		Label(name + "_" + label + "_loop")
		body(nil)
		ADDQ(U8(64), R8)
		DECQ(R9)
		JNZ(LabelRef(name + "_" + label + "_loop"))
		Label(name + "_" + label + "_tail")
		TESTQ(RBX, RBX)
		JZ(LabelRef(name + "_" + label + "_done"))
		body(K1)
		Label(name + "_" + label + "_done")
	}
}

// load512 loads a block into r, zeroing the lanes past the mask.
func load512(m Mem, r VecPhysical, mask Op) {
	if mask == nil {
		VMOVUPS(m, r)
	} else {
		VMOVUPS_Z(m, mask, r)
	}
}

func store512(r VecPhysical, m Mem, mask Op) {
	if mask == nil {
		VMOVUPS(r, m)
	} else {
		VMOVUPS(r, mask, m)
	}
}

// accumulate512 adds the sixteen floats of v, as float64, to the lanes in
// lo (0-7) and hi (8-15); t0 and t1 are scratch.
func accumulate512(v, lo, hi, t0, t1 VecPhysical) {
	VCVTPS2PD(v.AsY(), t0)
	VEXTRACTF64X4(U8(1), v, t1.AsY())
	VCVTPS2PD(t1.AsY(), t1)
	VADDPD(t0, lo, lo)
	VADDPD(t1, hi, hi)
}

// laneSum512 adds the lanes of lo and hi pairwise (i and i+8, then i+4,
// i+2, i+1) into the low element of lo; t is scratch.
func laneSum512(lo, hi, t VecPhysical) {
	VADDPD(hi, lo, lo)
	VEXTRACTF64X4(U8(1), lo, t.AsY())
	VADDPD(t.AsY(), lo.AsY(), lo.AsY())
	VEXTRACTF128(U8(1), lo.AsY(), t.AsX())
	VADDPD(t.AsX(), lo.AsX(), lo.AsX())
	VPERMILPD(U8(1), lo.AsX(), t.AsX())
	VADDSD(t.AsX(), lo.AsX(), lo.AsX())
}

func genRowSumsAVX512(k kernel) {
	name := k.name + "AVX512"
	TEXT(name, NOSPLIT, k.sig)
	Pragma("noescape")
	Doc(k.doc(name)...)
	x := Load(Param("x").Base(), RSI)
	n := Load(Param("x").Len(), RCX)
	pass := rows512(name, n)
	Comment("Z4, Z5: lanes 0-7 and 8-15 of the sum; Z6, Z7: of the sum of squares.")
	for _, r := range []VecPhysical{Z4, Z5, Z6, Z7} {
		VPXORQ(r, r, r)
	}
	pass("sum", func(mask Op) {
		load512(Mem{Base: x, Index: R8, Scale: 1}, Z0, mask)
		VCVTPS2PD(Y0, Z1)
		VEXTRACTF64X4(U8(1), Z0, Y2)
		VCVTPS2PD(Y2, Z2)
		VADDPD(Z1, Z4, Z4)
		VADDPD(Z2, Z5, Z5)
		VFMADD231PD(Z1, Z1, Z6)
		VFMADD231PD(Z2, Z2, Z7)
	})
	laneSum512(Z4, Z5, Z8)
	laneSum512(Z6, Z7, Z8)
	Store(X4, ReturnIndex(0))
	Store(X6, ReturnIndex(1))
	VZEROUPPER()
	RET()
}

func genNormRowAVX512(k kernel) {
	name := k.name + "AVX512"
	TEXT(name, NOSPLIT, k.sig)
	Pragma("noescape")
	Doc(k.doc(name)...)
	y := Load(Param("y").Base(), RDI)
	x := Load(Param("x").Base(), RSI)
	g := Load(Param("g").Base(), R10)
	b := Load(Param("b").Base(), R11)
	n := Load(Param("x").Len(), RCX)
	VBROADCASTSS(gen.ParamAddr("m"), Z30)
	VBROADCASTSS(gen.ParamAddr("s"), Z31)
	pass := rows512(name, n)
	pass("norm", func(mask Op) {
		at := func(base Register) Mem { return Mem{Base: base, Index: R8, Scale: 1} }
		load512(at(x), Z0, mask)
		load512(at(g), Z1, mask)
		load512(at(b), Z2, mask)
		VSUBPS(Z30, Z0, Z0)
		VMULPS(Z31, Z0, Z0)
		VMULPS(Z1, Z0, Z0)
		VADDPS(Z2, Z0, Z0)
		store512(Z0, at(y), mask)
	})
	VZEROUPPER()
	RET()
}

func genNormGradSumsAVX512(k kernel) {
	name := k.name + "AVX512"
	TEXT(name, NOSPLIT, k.sig)
	Pragma("noescape")
	Doc(k.doc(name)...)
	x := Load(Param("x").Base(), RSI)
	dy := Load(Param("dy").Base(), RDI)
	g := Load(Param("g").Base(), R10)
	n := Load(Param("x").Len(), RCX)
	VBROADCASTSS(gen.ParamAddr("m"), Z30)
	VBROADCASTSS(gen.ParamAddr("s"), Z31)
	pass := rows512(name, n)
	Comment("Z8, Z9: lanes 0-7 and 8-15 of sum t; Z10, Z11: of sum t (x - m) s.")
	for _, r := range []VecPhysical{Z8, Z9, Z10, Z11} {
		VPXORQ(r, r, r)
	}
	pass("sums", func(mask Op) {
		at := func(base Register) Mem { return Mem{Base: base, Index: R8, Scale: 1} }
		load512(at(x), Z0, mask)
		load512(at(dy), Z1, mask)
		load512(at(g), Z2, mask)
		VMULPS(Z2, Z1, Z1) // t = dy g
		VSUBPS(Z30, Z0, Z0)
		VMULPS(Z31, Z0, Z0) // (x - m) s
		VMULPS(Z1, Z0, Z0)  // t (x - m) s
		accumulate512(Z1, Z8, Z9, Z3, Z4)
		accumulate512(Z0, Z10, Z11, Z3, Z4)
	})
	laneSum512(Z8, Z9, Z3)
	laneSum512(Z10, Z11, Z3)
	Store(X8, ReturnIndex(0))
	Store(X10, ReturnIndex(1))
	VZEROUPPER()
	RET()
}

func genNormGradRowAVX512(k kernel) {
	name := k.name + "AVX512"
	TEXT(name, NOSPLIT, k.sig)
	Pragma("noescape")
	Doc(k.doc(name)...)
	dx := Load(Param("dx").Base(), R11)
	x := Load(Param("x").Base(), RSI)
	dy := Load(Param("dy").Base(), RDI)
	g := Load(Param("g").Base(), R10)
	n := Load(Param("x").Len(), RCX)
	VBROADCASTSS(gen.ParamAddr("m"), Z28)
	VBROADCASTSS(gen.ParamAddr("s"), Z29)
	VBROADCASTSS(gen.ParamAddr("mg"), Z30)
	VBROADCASTSS(gen.ParamAddr("mgx"), Z31)
	pass := rows512(name, n)
	pass("dx", func(mask Op) {
		at := func(base Register) Mem { return Mem{Base: base, Index: R8, Scale: 1} }
		load512(at(x), Z0, mask)
		load512(at(dy), Z1, mask)
		load512(at(g), Z2, mask)
		VMULPS(Z2, Z1, Z1)  // dy g
		VSUBPS(Z30, Z1, Z1) // t = dy g - mg
		VSUBPS(Z28, Z0, Z0)
		VMULPS(Z29, Z0, Z0) // h = (x - m) s
		VMULPS(Z31, Z0, Z0) // h mgx
		VSUBPS(Z0, Z1, Z1)  // t - h mgx
		VMULPS(Z29, Z1, Z1)
		store512(Z1, at(dx), mask)
	})
	VZEROUPPER()
	RET()
}

// rows256 is rows512 for AVX2: blocks of sixteen floats as two halves of
// eight, the last partial block under the masks Y14 (elements 0-7) and Y15
// (8-15); body gets the half and whether the block is the partial one.
func rows256(name string, n Register) func(label string, body func(h int, last bool)) {
	MOVQ(n, RBX)
	ANDQ(U8(15), RBX)
	VMOVQ(RBX, X15)
	VPBROADCASTD(X15, Y15)
	tailMask256(Y15, Y14, 0)
	tailMask256(Y15, Y15, 8)
	SHRQ(U8(4), n)
	return func(label string, body func(h int, last bool)) {
		XORQ(R8, R8)
		MOVQ(n, R9)
		TESTQ(R9, R9)
		JZ(LabelRef(name + "_" + label + "_tail"))
		Label(name + "_" + label + "_loop")
		body(0, false)
		body(1, false)
		ADDQ(U8(64), R8)
		DECQ(R9)
		JNZ(LabelRef(name + "_" + label + "_loop"))
		Label(name + "_" + label + "_tail")
		TESTQ(RBX, RBX)
		JZ(LabelRef(name + "_" + label + "_done"))
		body(0, true)
		body(1, true)
		Label(name + "_" + label + "_done")
	}
}

var masks256 = []VecPhysical{Y14, Y15}

func at256(base Register, h int) Mem { return Mem{Base: base, Index: R8, Scale: 1, Disp: 32 * h} }

func load256(m Mem, r VecPhysical, h int, last bool) {
	if last {
		VMASKMOVPS(m, masks256[h], r)
	} else {
		VMOVUPS(m, r)
	}
}

func store256(r VecPhysical, m Mem, h int, last bool) {
	if last {
		VMASKMOVPS(r, masks256[h], m)
	} else {
		VMOVUPS(r, m)
	}
}

// accumulate256 adds the eight floats of v, as float64, to the lanes
// acc[0] (elements 0-3 of the half) and acc[1] (4-7); t0 and t1 are scratch.
func accumulate256(v VecPhysical, acc []VecPhysical, t0, t1 VecPhysical) {
	VCVTPS2PD(v.AsX(), t0)
	VEXTRACTF128(U8(1), v, t1.AsX())
	VCVTPS2PD(t1.AsX(), t1)
	VADDPD(t0, acc[0], acc[0])
	VADDPD(t1, acc[1], acc[1])
}

// laneSum256 adds sixteen lanes held in a[0..3] (lanes 0-3, 4-7, 8-11,
// 12-15) pairwise into the low element of a[0].
func laneSum256(a []VecPhysical) {
	VADDPD(a[2], a[0], a[0])
	VADDPD(a[3], a[1], a[1])
	VADDPD(a[1], a[0], a[0])
	VEXTRACTF128(U8(1), a[0], a[1].AsX())
	VADDPD(a[1].AsX(), a[0].AsX(), a[0].AsX())
	VPERMILPD(U8(1), a[0].AsX(), a[1].AsX())
	VADDSD(a[1].AsX(), a[0].AsX(), a[0].AsX())
}

func genRowSumsAVX2(k kernel) {
	name := k.name + "AVX2"
	TEXT(name, NOSPLIT, k.sig)
	Pragma("noescape")
	Doc(k.doc(name)...)
	x := Load(Param("x").Base(), RSI)
	n := Load(Param("x").Len(), RCX)
	pass := rows256(name, n)
	sum := []VecPhysical{Y6, Y7, Y8, Y9}
	sq := []VecPhysical{Y10, Y11, Y12, Y13}
	Comment("Y6-Y9: lanes 0-3, 4-7, 8-11, 12-15 of the sum; Y10-Y13: of the sum of squares.")
	for _, r := range append(append([]VecPhysical{}, sum...), sq...) {
		VXORPD(r, r, r)
	}
	pass("sum", func(h int, last bool) {
		load256(at256(x, h), Y0, h, last)
		VCVTPS2PD(X0, Y1)
		VEXTRACTF128(U8(1), Y0, X2)
		VCVTPS2PD(X2, Y2)
		VADDPD(Y1, sum[2*h], sum[2*h])
		VADDPD(Y2, sum[2*h+1], sum[2*h+1])
		VFMADD231PD(Y1, Y1, sq[2*h])
		VFMADD231PD(Y2, Y2, sq[2*h+1])
	})
	laneSum256(sum)
	laneSum256(sq)
	Store(X6, ReturnIndex(0))
	Store(X10, ReturnIndex(1))
	VZEROUPPER()
	RET()
}

func genNormRowAVX2(k kernel) {
	name := k.name + "AVX2"
	TEXT(name, NOSPLIT, k.sig)
	Pragma("noescape")
	Doc(k.doc(name)...)
	y := Load(Param("y").Base(), RDI)
	x := Load(Param("x").Base(), RSI)
	g := Load(Param("g").Base(), R10)
	b := Load(Param("b").Base(), R11)
	n := Load(Param("x").Len(), RCX)
	VBROADCASTSS(gen.ParamAddr("m"), Y12)
	VBROADCASTSS(gen.ParamAddr("s"), Y13)
	pass := rows256(name, n)
	pass("norm", func(h int, last bool) {
		load256(at256(x, h), Y0, h, last)
		load256(at256(g, h), Y1, h, last)
		load256(at256(b, h), Y2, h, last)
		VSUBPS(Y12, Y0, Y0)
		VMULPS(Y13, Y0, Y0)
		VMULPS(Y1, Y0, Y0)
		VADDPS(Y2, Y0, Y0)
		store256(Y0, at256(y, h), h, last)
	})
	VZEROUPPER()
	RET()
}

func genNormGradSumsAVX2(k kernel) {
	name := k.name + "AVX2"
	TEXT(name, NOSPLIT, k.sig)
	Pragma("noescape")
	Doc(k.doc(name)...)
	x := Load(Param("x").Base(), RSI)
	dy := Load(Param("dy").Base(), RDI)
	g := Load(Param("g").Base(), R10)
	n := Load(Param("x").Len(), RCX)
	pass := rows256(name, n)
	st := []VecPhysical{Y6, Y7, Y8, Y9}
	stx := []VecPhysical{Y10, Y11, Y12, Y13}
	Comment("Y6-Y9: lanes 0-3, 4-7, 8-11, 12-15 of sum t; Y10-Y13: of sum t (x - m) s.")
	for _, r := range append(append([]VecPhysical{}, st...), stx...) {
		VXORPD(r, r, r)
	}
	pass("sums", func(h int, last bool) {
		load256(at256(x, h), Y0, h, last)
		load256(at256(dy, h), Y1, h, last)
		load256(at256(g, h), Y2, h, last)
		VMULPS(Y2, Y1, Y1) // t = dy g
		VBROADCASTSS(gen.ParamAddr("m"), Y2)
		VSUBPS(Y2, Y0, Y0)
		VBROADCASTSS(gen.ParamAddr("s"), Y2)
		VMULPS(Y2, Y0, Y0) // (x - m) s
		VMULPS(Y1, Y0, Y0) // t (x - m) s
		accumulate256(Y1, st[2*h:], Y2, Y3)
		accumulate256(Y0, stx[2*h:], Y4, Y5)
	})
	laneSum256(st)
	laneSum256(stx)
	Store(X6, ReturnIndex(0))
	Store(X10, ReturnIndex(1))
	VZEROUPPER()
	RET()
}

func genNormGradRowAVX2(k kernel) {
	name := k.name + "AVX2"
	TEXT(name, NOSPLIT, k.sig)
	Pragma("noescape")
	Doc(k.doc(name)...)
	dx := Load(Param("dx").Base(), R11)
	x := Load(Param("x").Base(), RSI)
	dy := Load(Param("dy").Base(), RDI)
	g := Load(Param("g").Base(), R10)
	n := Load(Param("x").Len(), RCX)
	VBROADCASTSS(gen.ParamAddr("m"), Y10)
	VBROADCASTSS(gen.ParamAddr("s"), Y11)
	VBROADCASTSS(gen.ParamAddr("mg"), Y12)
	VBROADCASTSS(gen.ParamAddr("mgx"), Y13)
	pass := rows256(name, n)
	pass("dx", func(h int, last bool) {
		load256(at256(x, h), Y0, h, last)
		load256(at256(dy, h), Y1, h, last)
		load256(at256(g, h), Y2, h, last)
		VMULPS(Y2, Y1, Y1)  // dy g
		VSUBPS(Y12, Y1, Y1) // t = dy g - mg
		VSUBPS(Y10, Y0, Y0)
		VMULPS(Y11, Y0, Y0) // h = (x - m) s
		VMULPS(Y13, Y0, Y0) // h mgx
		VSUBPS(Y0, Y1, Y1)  // t - h mgx
		VMULPS(Y11, Y1, Y1)
		store256(Y1, at256(dx, h), h, last)
	})
	VZEROUPPER()
	RET()
}
