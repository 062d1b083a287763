package main

import (
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

// expPoly512 sets p = e^r for |r| <= ln2/2: expPoly.
func expPoly512(c *consts512, r, p VecPhysical) {
	VMOVAPS(c.get("expC4"), p)
	VFMADD231PS(c.get("expC5"), r, p) // p = c5 r + c4
	VFMADD213PS(c.get("expC3"), r, p) // p = p r + c3
	VFMADD213PS(c.get("expC2"), r, p)
	VFMADD213PS(c.get("expC1"), r, p)
	VFMADD213PS(c.get("one"), r, p)
}

var expConsts = []string{"one", "expMin", "expMax", "log2e", "ln2Hi", "ln2Lo", "expC1", "expC2", "expC3", "expC4", "expC5"}

// exp512 sets y = e^x: expElem. clampHigh is false where x <= 0 is known
// (the clamp is then the identity); mask, if not nil, further zeroes the lanes
// it clears. It uses t[0:3] and K2.
func exp512(c *consts512, x, y VecPhysical, t []VecPhysical, clampHigh bool, mask Op) {
	v, n, p := t[0], t[1], t[2]
	VMAXPS(x, c.get("expMin"), v) // v = max(expMin, x), NaN stays
	if clampHigh {
		VMINPS(v, c.get("expMax"), v) // v = min(expMax, v)
	}
	VMULPS(c.get("log2e"), v, n)
	VRNDSCALEPS(U8(0), n, n)           // n = round(v log2 e), halves to even
	VFNMADD231PS(c.get("ln2Hi"), n, v) // r = v - n ln2Hi
	VFNMADD231PS(c.get("ln2Lo"), n, v) // r -= n ln2Lo
	expPoly512(c, v, p)
	VCMPPS(U8(cmpNLTUQ), c.get("expMin"), x, K2) // keep lanes with x >= expMin or NaN
	if mask != nil {
		KANDW(mask, K2, K2)
	}
	VSCALEFPS_Z(n, p, K2, y) // y = p 2^n, or 0
}

var erfcConsts = []string{"one", "absMask", "geluMaxAbs", "invSqrt2", "asP", "asA1", "asA2", "asA3", "asA4", "asA5",
	"negLog2e", "ln2Hi", "expC1", "expC2", "expC3", "expC4", "expC5"}

// halfErfc512 computes, from x, ax = min(|x|, geluMaxAbs), e = e^-z² and
// h = erfc(z)/2 for z = ax/sqrt2: halfErfc. It uses t[0:4].
func halfErfc512(c *consts512, x, ax, e, h VecPhysical, t []VecPhysical) {
	z, d, q, n := t[0], t[1], t[2], t[3]
	VPANDD(c.get("absMask"), x, ax)
	VMINPS(ax, c.get("geluMaxAbs"), ax) // ax = min(geluMaxAbs, |x|), NaN stays
	VMULPS(c.get("invSqrt2"), ax, z)
	Comment("t = 1 / (1 + p z); q = t (a1 + t (a2 + t (a3 + t (a4 + t a5))))")
	VMOVAPS(c.get("one"), d)
	VFMADD231PS(c.get("asP"), z, d)
	VDIVPS(d, c.get("one"), d) // d = t
	VMOVAPS(c.get("asA4"), q)
	VFMADD231PS(c.get("asA5"), d, q)
	VFMADD213PS(c.get("asA3"), d, q)
	VFMADD213PS(c.get("asA2"), d, q)
	VFMADD213PS(c.get("asA1"), d, q)
	VMULPS(d, q, q)
	Comment("e = e^-u, u = z²: n = round(-u log2 e), r = -u - n ln2")
	VMULPS(z, z, z)
	VMULPS(c.get("negLog2e"), z, n)
	VRNDSCALEPS(U8(0), n, n)
	VFNMSUB231PS(c.get("ln2Hi"), n, z) // r = -(n ln2) - u
	expPoly512(c, z, d)
	VSCALEFPS(n, d, e)
	VMULPS(e, q, h)
}

// elementwise512 emits a kernel that maps x (and dy) to dst 16 lanes at a
// time, the last partial vector under a mask. body computes the result into
// out from the vector in x; dy is the matching vector of the second input,
// as a memory operand or a register.
func elementwise512(name, sig string, doc []string, second bool, consts []string,
	body func(c *consts512, x, out VecPhysical, dy Op, mask Op)) {
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
	Comment("Whole vectors.")
	MOVQ(n, RAX)
	SHRQ(U8(4), RAX)
	JZ(LabelRef(name + "_tail"))
	Label(name + "_loop")
	VMOVUPS(Mem{Base: x}, Z0)
	var dyOp Op
	if second {
		dyOp = Mem{Base: dy}
	}
	body(c, Z0, Z1, dyOp, nil)
	VMOVUPS(Z1, Mem{Base: dst})
	ADDQ(U8(64), x)
	ADDQ(U8(64), dst)
	if second {
		ADDQ(U8(64), dy)
	}
	DECQ(RAX)
	JNZ(LabelRef(name + "_loop"))

	Label(name + "_tail")
	Comment("The last len(x) % 16 elements, under a mask.")
	ANDQ(U8(15), n)
	JZ(LabelRef(name + "_done"))
	MOVL(U32(1), EAX)
	SHLL(CL, EAX)
	DECL(EAX)
	KMOVW(EAX, K1)
	VMOVUPS_Z(Mem{Base: x}, K1, Z0)
	if second {
		VMOVUPS_Z(Mem{Base: dy}, K1, Z2)
		dyOp = Z2
	}
	body(c, Z0, Z1, dyOp, K1)
	VMOVUPS(Z1, K1, Mem{Base: dst})
	Label(name + "_done")
	VZEROUPPER()
	RET()
}

func genExpAVX512(k kernel) {
	name := k.name + "AVX512"
	elementwise512(name, k.sig, k.doc(name), false, expConsts,
		func(c *consts512, x, out VecPhysical, _ Op, _ Op) {
			exp512(c, x, out, []VecPhysical{Z3, Z4, Z5}, true, nil)
		})
}

func genGeluAVX512(k kernel) {
	name := k.name + "AVX512"
	elementwise512(name, k.sig, k.doc(name), false, append(erfcConsts, "zero"),
		func(c *consts512, x, out VecPhysical, _ Op, _ Op) {
			ax, e, h := Z3, Z4, Z5
			halfErfc512(c, x, ax, e, h, []VecPhysical{Z6, Z7, Z8, Z9})
			Comment("gelu = max(0, x) - ax h")
			VMAXPS(x, c.get("zero"), out)
			VFNMADD231PS(h, ax, out)
		})
}

func genGeluGradAVX512(k kernel) {
	name := k.name + "AVX512"
	elementwise512(name, k.sig, k.doc(name), true, append(erfcConsts, "zero", "invSqrt2Pi"),
		func(c *consts512, x, out VecPhysical, dy Op, _ Op) {
			ax, e, h := Z3, Z4, Z5
			halfErfc512(c, x, ax, e, h, []VecPhysical{Z6, Z7, Z8, Z9})
			Comment("g = h - ax phi; grad = x >= 0 ? 1 - g : g")
			VMULPS(c.get("invSqrt2Pi"), ax, ax)
			VFNMADD231PS(e, ax, h)
			VCMPPS(U8(cmpGEOQ), c.get("zero"), x, K2)
			VSUBPS(h, c.get("one"), K2, h)
			VMULPS(dy, h, out)
		})
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
	MOVQ(n, RBX)
	ANDQ(U8(15), RBX)
	MOVL(U32(1), EDX)
	SHLXL(EBX, EDX, EDX)
	DECL(EDX)
	KMOVW(EDX, K1)
	SHRQ(U8(4), n) // whole vectors

	// pass emits a loop over the row: body gets the offset of a vector in
	// bytes (R8) and, for the last partial vector, the mask.
	pass := func(label string, body func(mask Op)) {
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
	xi := Mem{Base: x, Index: R8, Scale: 1}
	di := Mem{Base: dst, Index: R8, Scale: 1}

	Comment("Z0 = m, the largest x[i], in every lane.")
	VBROADCASTSS(scalarConst("negInf"), Z0)
	pass("max", func(mask Op) {
		if mask == nil {
			VMAXPS(xi, Z0, Z0)
		} else {
			VMAXPS(xi, Z0, mask, Z0)
		}
	})
	VEXTRACTF64X4(U8(1), Z0, Y1)
	VMAXPS(Y1, Y0, Y0)
	VEXTRACTF128(U8(1), Y0, X1)
	VMAXPS(X1, X0, X0)
	VPERMILPS(U8(0x4e), X0, X1)
	VMAXPS(X1, X0, X0)
	VPERMILPS(U8(0xb1), X0, X1)
	VMAXPS(X1, X0, X0)
	VBROADCASTSS(X0, Z0)

	Comment("dst[i] = e^(x[i] - m); Z6, Z7: lanes 0-7 and 8-15 of the sum, in float64.")
	VPXORQ(Z6, Z6, Z6)
	VPXORQ(Z7, Z7, Z7)
	pass("exp", func(mask Op) {
		if mask == nil {
			VMOVUPS(xi, Z1)
		} else {
			VMOVUPS_Z(xi, mask, Z1)
		}
		VSUBPS(Z0, Z1, Z1)
		exp512(c, Z1, Z2, []VecPhysical{Z3, Z4, Z5}, false, mask)
		if mask == nil {
			VMOVUPS(Z2, di)
		} else {
			VMOVUPS(Z2, mask, di)
		}
		VCVTPS2PD(Y2, Z3)
		VEXTRACTF64X4(U8(1), Z2, Y4)
		VCVTPS2PD(Y4, Z4)
		VADDPD(Z3, Z6, Z6)
		VADDPD(Z4, Z7, Z7)
	})
	Comment("Add the sixteen lanes pairwise: lane i and i+8, then i+4, i+2, i+1.")
	VADDPD(Z7, Z6, Z6)
	VEXTRACTF64X4(U8(1), Z6, Y7)
	VADDPD(Y7, Y6, Y6)
	VEXTRACTF128(U8(1), Y6, X7)
	VADDPD(X7, X6, X6)
	VPERMILPD(U8(1), X6, X7)
	VADDSD(X7, X6, X6)
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
