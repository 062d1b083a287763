package vmath

import (
	"fmt"
	"math/bits"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// Comparison predicates of VCMPPS.
const (
	cmpNLTUQ = 0x15 // !(a < b): true when either is NaN
	cmpGEOQ  = 0x1d // a >= b: false when either is NaN
)

// consts512 broadcasts constants into zmm registers, from Z31 down, once per
// kernel, before its loop.
type consts512 struct {
	regs map[string]VecPhysical
	next int
}

func newConsts512(names ...string) *consts512 {
	c := &consts512{regs: map[string]VecPhysical{}, next: 31}
	Comment("Broadcast the constants.")
	for _, n := range names {
		r := zmm(c.next)
		c.next--
		VBROADCASTSS(scalarConst(n), r)
		c.regs[n] = r
	}
	return c
}

func (c *consts512) get(name string) VecPhysical {
	r, ok := c.regs[name]
	if !ok {
		panic("constant not loaded: " + name)
	}
	return r
}

func zmm(i int) VecPhysical {
	return []VecPhysical{Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15,
		Z16, Z17, Z18, Z19, Z20, Z21, Z22, Z23, Z24, Z25, Z26, Z27, Z28, Z29, Z30, Z31}[i]
}

// vecs is a group of vectors that a kernel processes together: each step is
// emitted for all of them before the next, so that their independent chains
// interleave.
type vecs []VecPhysical

// zmmAlloc hands out zmm registers from Z0 up to top, the highest one the
// constants left free.
type zmmAlloc struct{ next, top int }

func (a *zmmAlloc) vecs(u int) vecs {
	v := make(vecs, u)
	for i := range v {
		if a.next > a.top {
			panic("out of zmm registers")
		}
		v[i] = zmm(a.next)
		a.next++
	}
	return v
}

// expPoly512 sets p = e^r or 2^r, by the coefficients named prefix+"1" to
// prefix+"5": expPoly, exp2Poly.
func expPoly512(c *consts512, prefix string, r, p vecs) {
	k := func(i int) VecPhysical { return c.get(fmt.Sprintf("%s%d", prefix, i)) }
	for i := range r {
		VMOVAPS(k(4), p[i])
	}
	for i := range r {
		VFMADD231PS(k(5), r[i], p[i]) // p = c5 r + c4
	}
	for j := 3; j >= 1; j-- {
		for i := range r {
			VFMADD213PS(k(j), r[i], p[i]) // p = p r + cj
		}
	}
	for i := range r {
		VFMADD213PS(c.get("one"), r[i], p[i])
	}
}

var expConsts = []string{"one", "expMin", "expMax", "log2e", "ln2Hi", "ln2Lo", "expC1", "expC2", "expC3", "expC4", "expC5"}

// maskRegs are the opmasks for the zero masks of up to four vectors; K1 is
// the tail mask.
var maskRegs = []Register{K2, K3, K4, K5}

// exp512 sets y = e^x: expElem. clampHigh is false where x <= 0 is known
// (the clamp is then the identity); tail, if not nil, further zeroes the
// lanes it clears. v, n and p are scratch.
func exp512(c *consts512, x, y, v, n, p vecs, clampHigh bool, tail Op) {
	for i := range x {
		VMAXPS(x[i], c.get("expMin"), v[i]) // v = max(expMin, x), NaN stays
	}
	if clampHigh {
		for i := range x {
			VMINPS(v[i], c.get("expMax"), v[i]) // v = min(expMax, v)
		}
	}
	for i := range x {
		VMULPS(c.get("log2e"), v[i], n[i])
	}
	for i := range x {
		VRNDSCALEPS(U8(0), n[i], n[i]) // n = round(v log2 e), halves to even
	}
	for i := range x {
		VFNMADD231PS(c.get("ln2Hi"), n[i], v[i]) // r = v - n ln2Hi
	}
	for i := range x {
		VFNMADD231PS(c.get("ln2Lo"), n[i], v[i]) // r -= n ln2Lo
	}
	expPoly512(c, "expC", v, p)
	for i := range x {
		VCMPPS(U8(cmpNLTUQ), c.get("expMin"), x[i], maskRegs[i]) // keep lanes with x >= expMin or NaN
		if tail != nil {
			KANDW(tail, maskRegs[i], maskRegs[i])
		}
	}
	for i := range x {
		VSCALEFPS_Z(n[i], p[i], maskRegs[i], y[i]) // y = p 2^n, or 0
	}
}

var erfcConsts = []string{"one", "absMask", "geluMaxAbs", "asP", "asA1", "asA2", "asA3", "asA4", "asA5",
	"negHalfLog2e", "exp2C1", "exp2C2", "exp2C3", "exp2C4", "exp2C5"}

// erfcParts512 computes, from x, ax = min(|x|, geluMaxAbs) and the parts of
// erfc(z)/2 = r p 2^n for z = ax/sqrt2, with p 2^n = e^-z²: erfcParts. d and
// f are scratch.
func erfcParts512(c *consts512, x, ax, r, p, n, d, f vecs) {
	for i := range x {
		VPANDD(c.get("absMask"), x[i], ax[i])
	}
	for i := range x {
		VMINPS(ax[i], c.get("geluMaxAbs"), ax[i]) // ax = min(geluMaxAbs, |x|), NaN stays
	}
	Comment("t = 1 / (1 + p ax); r = t (a1 + t (a2 + t (a3 + t (a4 + t a5))))")
	for i := range x {
		VMOVAPS(c.get("one"), d[i])
		VFMADD231PS(c.get("asP"), ax[i], d[i])
	}
	for i := range x {
		VDIVPS(d[i], c.get("one"), d[i]) // d = t
	}
	for i := range x {
		VMOVAPS(c.get("asA4"), r[i])
		VFMADD231PS(c.get("asA5"), d[i], r[i])
	}
	for _, a := range []string{"asA3", "asA2", "asA1"} {
		for i := range x {
			VFMADD213PS(c.get(a), d[i], r[i])
		}
	}
	for i := range x {
		VMULPS(d[i], r[i], r[i])
	}
	Comment("e^(-ax²/2) = 2^s, s = ax² (-log2(e)/2): n = round(s), p = 2^(s-n)")
	for i := range x {
		VMULPS(ax[i], ax[i], f[i])
	}
	for i := range x {
		VMULPS(c.get("negHalfLog2e"), f[i], f[i])
	}
	for i := range x {
		VRNDSCALEPS(U8(0), f[i], n[i])
	}
	for i := range x {
		VSUBPS(n[i], f[i], f[i])
	}
	expPoly512(c, "exp2C", f, p)
}

// elementwise512 emits a kernel that maps x (and dy) to dst, unroll vectors
// of 16 lanes a step, then one vector a step, then the last partial vector
// under a mask. body computes out from x; dy holds the matching vectors of
// the second input, as memory operands or registers; a is the allocator of
// the scratch registers.
func elementwise512(name, sig string, doc []string, second bool, unroll int, consts []string,
	body func(c *consts512, a *zmmAlloc, x, out vecs, dy []Op, tail Op)) {
	TEXT(name, NOSPLIT, sig)
	Pragma("noescape")
	Doc(doc...)
	dst := Load(Param("dst").Base(), RDI)
	x := Load(Param("x").Base(), RSI)
	n := Load(Param("x").Len(), RCX)
	var dy Register
	if second {
		dy = Load(Param("dy").Base(), RDX)
	}
	c := newConsts512(consts...)

	// step emits the processing of u whole vectors at the pointers.
	step := func(u int) {
		a := &zmmAlloc{top: c.next}
		xs, outs := a.vecs(u), a.vecs(u)
		dys := make([]Op, u)
		for i := range xs {
			VMOVUPS(Mem{Base: x, Disp: 64 * i}, xs[i])
			if second {
				dys[i] = Mem{Base: dy, Disp: 64 * i}
			}
		}
		body(c, a, xs, outs, dys, nil)
		for i := range xs {
			VMOVUPS(outs[i], Mem{Base: dst, Disp: 64 * i})
		}
		ADDQ(U32(64*u), x)
		ADDQ(U32(64*u), dst)
		if second {
			ADDQ(U32(64*u), dy)
		}
	}
	if unroll > 1 {
		Comment(fmt.Sprintf("%d vectors a step.", unroll))
		MOVQ(n, RAX)
		SHRQ(U8(4), RAX)
		MOVQ(RAX, RBX)
		ANDQ(U32(unroll-1), RBX) // vectors left over
		SHRQ(U8(bits.TrailingZeros(uint(unroll))), RAX)
		JZ(LabelRef(name + "_one"))
		Label(name + "_loop")
		step(unroll)
		DECQ(RAX)
		JNZ(LabelRef(name + "_loop"))
	} else {
		MOVQ(n, RBX)
		SHRQ(U8(4), RBX)
	}
	Label(name + "_one")
	Comment("One vector a step.")
	TESTQ(RBX, RBX)
	JZ(LabelRef(name + "_tail"))
	Label(name + "_oneloop")
	step(1)
	DECQ(RBX)
	JNZ(LabelRef(name + "_oneloop"))

	Label(name + "_tail")
	Comment("The last len(x) % 16 elements, under the mask K1.")
	ANDQ(U8(15), n)
	JZ(LabelRef(name + "_done"))
	MOVL(U32(1), EAX)
	SHLL(CL, EAX)
	DECL(EAX)
	KMOVW(EAX, K1)
	a := &zmmAlloc{top: c.next}
	xs, outs := a.vecs(1), a.vecs(1)
	VMOVUPS_Z(Mem{Base: x}, K1, xs[0])
	dys := []Op{nil}
	if second {
		r := a.vecs(1)[0]
		VMOVUPS_Z(Mem{Base: dy}, K1, r)
		dys[0] = r
	}
	body(c, a, xs, outs, dys, K1)
	VMOVUPS(outs[0], K1, Mem{Base: dst})
	Label(name + "_done")
	VZEROUPPER()
	RET()
}

func genExpAVX512(k kernel) {
	name := k.name + "AVX512"
	elementwise512(name, k.sig, k.doc(name), false, 4, expConsts,
		func(c *consts512, a *zmmAlloc, x, out vecs, _ []Op, _ Op) {
			u := len(x)
			exp512(c, x, out, a.vecs(u), a.vecs(u), a.vecs(u), true, nil)
		})
}

func genGeluAVX512(k kernel) {
	name := k.name + "AVX512"
	elementwise512(name, k.sig, k.doc(name), false, 2, append(erfcConsts, "zero"),
		func(c *consts512, a *zmmAlloc, x, out vecs, _ []Op, _ Op) {
			u := len(x)
			ax, r, p, n, d := a.vecs(u), a.vecs(u), a.vecs(u), a.vecs(u), a.vecs(u)
			erfcParts512(c, x, ax, r, p, n, d, out)
			Comment("gelu = max(0, x) - ax h, h = erfc(z)/2 = r p 2^n")
			for i := range x {
				VMULPS(p[i], r[i], r[i])
			}
			for i := range x {
				VSCALEFPS(n[i], r[i], r[i])
			}
			for i := range x {
				VMAXPS(x[i], c.get("zero"), out[i])
			}
			for i := range x {
				VFNMADD231PS(r[i], ax[i], out[i])
			}
		})
}

func genGeluGradAVX512(k kernel) {
	name := k.name + "AVX512"
	elementwise512(name, k.sig, k.doc(name), true, 2, append(erfcConsts, "zero", "invSqrt2Pi"),
		func(c *consts512, a *zmmAlloc, x, out vecs, dy []Op, _ Op) {
			u := len(x)
			ax, r, p, n, d := a.vecs(u), a.vecs(u), a.vecs(u), a.vecs(u), a.vecs(u)
			erfcParts512(c, x, ax, r, p, n, d, out)
			Comment("g = erfc(z)/2 - ax phi(x) = (r - ax/sqrt(2 pi)) p 2^n; grad = x >= 0 ? 1 - g : g")
			for i := range x {
				VFNMADD231PS(c.get("invSqrt2Pi"), ax[i], r[i])
			}
			for i := range x {
				VMULPS(p[i], r[i], r[i])
			}
			for i := range x {
				VSCALEFPS(n[i], r[i], r[i])
			}
			for i := range x {
				VCMPPS(U8(cmpGEOQ), c.get("zero"), x[i], maskRegs[i])
			}
			for i := range x {
				VSUBPS(r[i], c.get("one"), maskRegs[i], r[i])
			}
			for i := range x {
				VMULPS(dy[i], r[i], out[i])
			}
		})
}

// rowMax512 sets every lane of Z0 to the largest element of the row at x,
// for the softmax kernel name: n full blocks of sixteen and, when RBX is not
// zero, the partial block masked by K1, as rows512 leaves them. It uses R8,
// R9 and Z0-Z3.
func rowMax512(name string, x, n Register) {
	xi := Mem{Base: x, Index: R8, Scale: 1}
	Comment("Z0 = m, the largest x[i], in every lane: four vectors a step into Z0-Z3, then one.")
	VBROADCASTSS(scalarConst("negInf"), Z0)
	VMOVAPS(Z0, Z1)
	VMOVAPS(Z0, Z2)
	VMOVAPS(Z0, Z3)
	XORQ(R8, R8)
	MOVQ(n, R9)
	SHRQ(U8(2), R9)
	JZ(LabelRef(name + "_max4_done"))
	Label(name + "_max4_loop")
	for i := 0; i < 4; i++ {
		VMAXPS(Mem{Base: x, Index: R8, Scale: 1, Disp: 64 * i}, zmm(i), zmm(i))
	}
	ADDQ(U32(256), R8)
	DECQ(R9)
	JNZ(LabelRef(name + "_max4_loop"))
	Label(name + "_max4_done")
	MOVQ(n, R9)
	ANDQ(U8(3), R9)
	JZ(LabelRef(name + "_max_tail"))
	Label(name + "_max_loop")
	VMAXPS(xi, Z0, Z0)
	ADDQ(U8(64), R8)
	DECQ(R9)
	JNZ(LabelRef(name + "_max_loop"))
	Label(name + "_max_tail")
	TESTQ(RBX, RBX)
	JZ(LabelRef(name + "_max_done"))
	VMAXPS(xi, Z1, K1, Z1)
	Label(name + "_max_done")
	VMAXPS(Z1, Z0, Z0)
	VMAXPS(Z3, Z2, Z2)
	VMAXPS(Z2, Z0, Z0)
	VEXTRACTF64X4(U8(1), Z0, Y1)
	VMAXPS(Y1, Y0, Y0)
	VEXTRACTF128(U8(1), Y0, X1)
	VMAXPS(X1, X0, X0)
	VPERMILPS(U8(0x4e), X0, X1)
	VMAXPS(X1, X0, X0)
	VPERMILPS(U8(0xb1), X0, X1)
	VMAXPS(X1, X0, X0)
	VBROADCASTSS(X0, Z0)
}

func genSoftmaxRowAVX512(k kernel) {
	name := k.name + "AVX512"
	TEXT(name, NOSPLIT, k.sig)
	Pragma("noescape")
	Doc(k.doc(name)...)
	dst := Load(Param("dst").Base(), RDI)
	x := Load(Param("x").Base(), RSI)
	n := Load(Param("x").Len(), RCX)
	c := newConsts512(expConsts...)

	Comment("K1: the low len(x) % 16 bits, for the last partial vector.")
	// pass emits a loop over the row: body gets the offset of a vector in
	// bytes (R8) and, for the last partial vector, the mask.
	pass := rows512(name, n)
	xi := Mem{Base: x, Index: R8, Scale: 1}
	di := Mem{Base: dst, Index: R8, Scale: 1}

	rowMax512(name, x, n)

	Comment("dst[i] = e^(x[i] - m); Z6, Z7: lanes 0-7 and 8-15 of the sum, in float64.")
	VPXORQ(Z6, Z6, Z6)
	VPXORQ(Z7, Z7, Z7)
	pass("exp", func(mask Op) {
		load512(xi, Z1, mask)
		VSUBPS(Z0, Z1, Z1)
		exp512(c, vecs{Z1}, vecs{Z2}, vecs{Z3}, vecs{Z4}, vecs{Z5}, false, mask)
		store512(Z2, di, mask)
		accumulate512(Z2, Z6, Z7, Z3, Z4)
	})
	Comment("Add the sixteen lanes pairwise: lane i and i+8, then i+4, i+2, i+1.")
	laneSum512(Z6, Z7, Z7)
	Comment("Z0 = float32(1 / sum) in every lane.")
	VCVTSS2SD(c.get("one").AsX(), X7, X7)
	VDIVSD(X6, X7, X7)
	VCVTSD2SS(X7, X7, X7)
	VBROADCASTSS(X7, Z0)

	Comment("dst[i] *= 1 / sum")
	pass("scale", func(mask Op) {
		if mask == nil {
			VMULPS(di, Z0, Z1)
			VMOVUPS(Z1, di)
		} else {
			VMULPS(di, Z0, mask, Z1)
			VMOVUPS(Z1, mask, di)
		}
	})
	VZEROUPPER()
	RET()
}

// genSoftmaxRow2AVX512 emits softmaxRow2AVX512: softmaxRowAVX512 on two rows
// at once, each step emitted for both before the next, so that the two
// rows' chains of dependent instructions (the reductions of the maximum and
// the sum, the polynomial, the division) overlap. A row of attention's
// 50 tokens is too short for the out-of-order core to overlap one call
// with the next. Each row is computed by the operations of
// softmaxRowAVX512 on it (the maximum with one accumulator instead of
// four, which gives the same value), so the bits are those of
// softmaxRowGo on each row, as its twin says.
func genSoftmaxRow2AVX512(k kernel) {
	name := k.name + "AVX512"
	TEXT(name, NOSPLIT, k.sig)
	Pragma("noescape")
	Doc(k.doc(name)...)
	d0, x0 := Load(Param("dst").Base(), RDI), Load(Param("x").Base(), RSI)
	n := Load(Param("n"), RCX)
	d1, x1 := R10, R11
	LEAQ(Mem{Base: x0, Index: n, Scale: 4}, x1)
	LEAQ(Mem{Base: d0, Index: n, Scale: 4}, d1)
	c := newConsts512(expConsts...)
	Comment("K1: the low n % 16 bits, for the last partial vector.")
	pass := rows512(name, n)
	at := func(base Register) Mem { return Mem{Base: base, Index: R8, Scale: 1} }
	m0, m1 := Z0, Z8
	Comment("Z0, Z8 = the largest element of each row, in every lane.")
	VBROADCASTSS(scalarConst("negInf"), m0)
	VMOVAPS(m0, m1)
	pass("max", func(mask Op) {
		if mask == nil {
			VMAXPS(at(x0), m0, m0)
			VMAXPS(at(x1), m1, m1)
		} else {
			VMAXPS(at(x0), m0, mask, m0)
			VMAXPS(at(x1), m1, mask, m1)
		}
	})
	for _, s := range [][2]VecPhysical{{m0, Z1}, {m1, Z9}} {
		VEXTRACTF64X4(U8(1), s[0], s[1].AsY())
	}
	for _, s := range [][2]VecPhysical{{m0, Z1}, {m1, Z9}} {
		VMAXPS(s[1].AsY(), s[0].AsY(), s[0].AsY())
	}
	for _, s := range [][2]VecPhysical{{m0, Z1}, {m1, Z9}} {
		VEXTRACTF128(U8(1), s[0].AsY(), s[1].AsX())
	}
	for _, s := range [][2]VecPhysical{{m0, Z1}, {m1, Z9}} {
		VMAXPS(s[1].AsX(), s[0].AsX(), s[0].AsX())
	}
	for _, imm := range []uint8{0x4e, 0xb1} {
		for _, s := range [][2]VecPhysical{{m0, Z1}, {m1, Z9}} {
			VPERMILPS(U8(imm), s[0].AsX(), s[1].AsX())
		}
		for _, s := range [][2]VecPhysical{{m0, Z1}, {m1, Z9}} {
			VMAXPS(s[1].AsX(), s[0].AsX(), s[0].AsX())
		}
	}
	VBROADCASTSS(m0.AsX(), m0)
	VBROADCASTSS(m1.AsX(), m1)

	Comment("dst[i] = e^(x[i] - m); Z6, Z7 and Z14, Z15: lanes 0-7 and 8-15 of each sum, in float64.")
	for _, r := range []VecPhysical{Z6, Z7, Z14, Z15} {
		VPXORQ(r, r, r)
	}
	pass("exp", func(mask Op) {
		load512(at(x0), Z1, mask)
		load512(at(x1), Z9, mask)
		VSUBPS(m0, Z1, Z1)
		VSUBPS(m1, Z9, Z9)
		exp512(c, vecs{Z1, Z9}, vecs{Z2, Z10}, vecs{Z3, Z11}, vecs{Z4, Z12}, vecs{Z5, Z13}, false, mask)
		store512(Z2, at(d0), mask)
		store512(Z10, at(d1), mask)
		accumulate512(Z2, Z6, Z7, Z3, Z4)
		accumulate512(Z10, Z14, Z15, Z11, Z12)
	})
	Comment("Add each row's sixteen lanes pairwise: lane i and i+8, then i+4, i+2, i+1.")
	laneSum512(Z6, Z7, Z7)
	laneSum512(Z14, Z15, Z15)
	Comment("Z0, Z8 = float32(1 / sum) in every lane.")
	VCVTSS2SD(c.get("one").AsX(), X7, X7)
	VCVTSS2SD(c.get("one").AsX(), X15, X15)
	VDIVSD(X6, X7, X7)
	VDIVSD(X14, X15, X15)
	VCVTSD2SS(X7, X7, X7)
	VCVTSD2SS(X15, X15, X15)
	VBROADCASTSS(X7, m0)
	VBROADCASTSS(X15, m1)

	Comment("dst[i] *= 1 / sum")
	pass("scale", func(mask Op) {
		for _, r := range []struct {
			d    Register
			m, t VecPhysical
		}{{d0, m0, Z1}, {d1, m1, Z9}} {
			if mask == nil {
				VMULPS(at(r.d), r.m, r.t)
				VMOVUPS(r.t, at(r.d))
			} else {
				VMULPS(at(r.d), r.m, mask, r.t)
				VMOVUPS(r.t, mask, at(r.d))
			}
		}
	})
	VZEROUPPER()
	RET()
}
