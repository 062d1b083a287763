package vmath

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The AVX2+FMA kernels follow the AVX-512 ones with 8 lanes and without
// opmasks: constants are memory operands (16 ymm registers are too few to
// hold them), 2^n is built in the exponent bits, and the last partial vector
// is read and written with VMASKMOVPS.

// kv is the memory operand of eight copies of a constant.
func kv(name string) Mem { return vectorConst(name) }

// tailMask256 sets mask to all ones in the lanes i with first+i < rem, rem
// broadcast in remv.
func tailMask256(remv, mask VecPhysical, first int) {
	VPCMPGTD(iotaTable.Offset(4*first), remv, mask)
}

// expPoly256 sets p = e^r: expPoly.
func expPoly256(r, p VecPhysical) {
	VMOVUPS(kv("expC4"), p)
	VFMADD231PS(kv("expC5"), r, p)
	VFMADD213PS(kv("expC3"), r, p)
	VFMADD213PS(kv("expC2"), r, p)
	VFMADD213PS(kv("expC1"), r, p)
	VFMADD213PS(kv("one"), r, p)
}

// exp256 sets y = e^x: expElem. It uses t[0:4].
func exp256(x, y VecPhysical, t []VecPhysical, clampHigh bool) {
	v, n, p, a := t[0], t[1], t[2], t[3]
	VMOVUPS(kv("expMin"), a)
	VMAXPS(x, a, v) // v = max(expMin, x), NaN stays
	if clampHigh {
		VMOVUPS(kv("expMax"), a)
		VMINPS(v, a, v)
	}
	VMULPS(kv("log2e"), v, n)
	VROUNDPS(U8(0), n, n)
	VFNMADD231PS(kv("ln2Hi"), n, v)
	VFNMADD231PS(kv("ln2Lo"), n, v)
	expPoly256(v, p)
	Comment("y = p 2^n as (p 2^(n>>1)) 2^(n-(n>>1)): n may be 128")
	VCVTPS2DQ(n, n)
	VPSRAD(U8(1), n, a)
	VPSUBD(a, n, n)
	VPADDD(kv("bias"), a, a)
	VPSLLD(U8(23), a, a)
	VPADDD(kv("bias"), n, n)
	VPSLLD(U8(23), n, n)
	VMULPS(a, p, p)
	VMULPS(n, p, p)
	VCMPPS(U8(cmpNLTUQ), kv("expMin"), x, a) // keep lanes with x >= expMin or NaN
	VANDPS(a, p, y)
}

// erfcParts256 is erfcParts512 for AVX2, with 2^n as its exponent bits in
// n. It uses t[0:2].
func erfcParts256(x, ax, r, p, n VecPhysical, t []VecPhysical) {
	d, f := t[0], t[1]
	VANDPS(kv("absMask"), x, ax)
	VMOVUPS(kv("geluMaxAbs"), d)
	VMINPS(ax, d, ax)
	Comment("t = 1 / (1 + p ax); r = t (a1 + t (a2 + t (a3 + t (a4 + t a5))))")
	VMOVUPS(kv("one"), d)
	VFMADD231PS(kv("asP"), ax, d)
	VMOVUPS(kv("one"), r)
	VDIVPS(d, r, d)
	VMOVUPS(kv("asA4"), r)
	VFMADD231PS(kv("asA5"), d, r)
	VFMADD213PS(kv("asA3"), d, r)
	VFMADD213PS(kv("asA2"), d, r)
	VFMADD213PS(kv("asA1"), d, r)
	VMULPS(d, r, r)
	Comment("e^(-ax²/2) = 2^s, s = ax² (-log2(e)/2): n = round(s), p = 2^(s-n)")
	VMULPS(ax, ax, f)
	VMULPS(kv("negHalfLog2e"), f, f)
	VROUNDPS(U8(0), f, n)
	VSUBPS(n, f, f)
	VMOVUPS(kv("exp2C4"), p)
	VFMADD231PS(kv("exp2C5"), f, p)
	VFMADD213PS(kv("exp2C3"), f, p)
	VFMADD213PS(kv("exp2C2"), f, p)
	VFMADD213PS(kv("exp2C1"), f, p)
	VFMADD213PS(kv("one"), f, p)
	Comment("2^n, n in [-117, 0], from its exponent bits")
	VCVTPS2DQ(n, n)
	VPADDD(kv("bias"), n, n)
	VPSLLD(U8(23), n, n)
}

// elementwise256 is elementwise512 for AVX2: 8 lanes a step.
func elementwise256(name, sig string, doc []string, second bool,
	body func(x, out VecPhysical, dy Op)) {
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
	Comment("Whole vectors.")
	MOVQ(n, RAX)
	SHRQ(U8(3), RAX)
	JZ(LabelRef(name + "_tail"))
	Label(name + "_loop")
	VMOVUPS(Mem{Base: x}, Y0)
	var dyOp Op
	if second {
		dyOp = Mem{Base: dy}
	}
	body(Y0, Y1, dyOp)
	VMOVUPS(Y1, Mem{Base: dst})
	ADDQ(U8(32), x)
	ADDQ(U8(32), dst)
	if second {
		ADDQ(U8(32), dy)
	}
	DECQ(RAX)
	JNZ(LabelRef(name + "_loop"))

	Label(name + "_tail")
	Comment("The last len(x) % 8 elements, under a mask in Y15.")
	ANDQ(U8(7), n)
	JZ(LabelRef(name + "_done"))
	VMOVQ(n, X15)
	VPBROADCASTD(X15, Y15)
	tailMask256(Y15, Y15, 0)
	VMASKMOVPS(Mem{Base: x}, Y15, Y0)
	if second {
		VMASKMOVPS(Mem{Base: dy}, Y15, Y2)
		dyOp = Y2
	}
	body(Y0, Y1, dyOp)
	VMASKMOVPS(Y1, Y15, Mem{Base: dst})
	Label(name + "_done")
	VZEROUPPER()
	RET()
}

func genExpAVX2(k kernel) {
	name := k.name + "AVX2"
	elementwise256(name, k.sig, k.doc(name), false, func(x, out VecPhysical, _ Op) {
		exp256(x, out, []VecPhysical{Y3, Y4, Y5, Y6}, true)
	})
}

func genGeluAVX2(k kernel) {
	name := k.name + "AVX2"
	elementwise256(name, k.sig, k.doc(name), false, func(x, out VecPhysical, _ Op) {
		ax, r, p, n := Y3, Y4, Y5, Y6
		erfcParts256(x, ax, r, p, n, []VecPhysical{Y7, Y8})
		Comment("gelu = max(0, x) - ax h, h = erfc(z)/2 = r p 2^n")
		VMULPS(p, r, r)
		VMULPS(n, r, r)
		VXORPS(Y7, Y7, Y7)
		VMAXPS(x, Y7, out)
		VFNMADD231PS(r, ax, out)
	})
}

func genGeluGradAVX2(k kernel) {
	name := k.name + "AVX2"
	elementwise256(name, k.sig, k.doc(name), true, func(x, out VecPhysical, dy Op) {
		ax, r, p, n := Y3, Y4, Y5, Y6
		erfcParts256(x, ax, r, p, n, []VecPhysical{Y7, Y8})
		Comment("g = erfc(z)/2 - ax phi(x) = (r - ax/sqrt(2 pi)) p 2^n; grad = x >= 0 ? 1 - g : g")
		VFNMADD231PS(kv("invSqrt2Pi"), ax, r)
		VMULPS(p, r, r)
		VMULPS(n, r, r)
		VXORPS(Y7, Y7, Y7)
		VCMPPS(U8(cmpGEOQ), Y7, x, Y7)
		VMOVUPS(kv("one"), Y8)
		VSUBPS(r, Y8, Y8)
		VBLENDVPS(Y7, Y8, r, r)
		VMULPS(dy, r, out)
	})
}

// genSoftmaxRowAVX2 emits softmaxRowAVX2: one row (softmaxRow256).
func genSoftmaxRowAVX2(k kernel) {
	name := k.name + "AVX2"
	TEXT(name, NOSPLIT, k.sig)
	Pragma("noescape")
	Doc(k.doc(name)...)
	dst := Load(Param("dst").Base(), RDI)
	x := Load(Param("x").Base(), RSI)
	n := Load(Param("x").Len(), RCX)
	softmaxRow256(name, dst, x, n)
	VZEROUPPER()
	RET()
}

// genSoftmaxRow2AVX2 emits softmaxRow2AVX2: the row of softmaxRowAVX2 twice,
// one row after the other (the AVX2 cores have few registers to interleave
// two rows in).
func genSoftmaxRow2AVX2(k kernel) {
	name := k.name + "AVX2"
	TEXT(name, NOSPLIT, k.sig)
	Pragma("noescape")
	Doc(k.doc(name)...)
	dst := Load(Param("dst").Base(), RDI)
	x := Load(Param("x").Base(), RSI)
	n := Load(Param("n"), RCX)
	softmaxRow256(name+"_r0", dst, x, n)
	Load(Param("n"), RCX)
	LEAQ(Mem{Base: x, Index: RCX, Scale: 4}, x)
	LEAQ(Mem{Base: dst, Index: RCX, Scale: 4}, dst)
	softmaxRow256(name+"_r1", dst, x, n)
	VZEROUPPER()
	RET()
}

// softmaxRow256 emits the softmax of the row of n floats at x into dst (the
// body of softmaxRowAVX2), its labels prefixed by name. It changes n. It
// walks the row in blocks of 16 elements, two ymm vectors, so that the lanes
// of the float64 sum are those of the AVX-512 kernel.
func softmaxRow256(name string, dst, x, n Register) {
	Comment("Y14, Y15: masks of the lanes of the last partial block; RCX: whole blocks.")
	pass := rows256(name, n)
	xi := func(h int) Mem { return at256(x, h) }
	di := func(h int) Mem { return at256(dst, h) }

	Comment("Y0 = m, the largest x[i], in every lane.")
	VMOVUPS(kv("negInf"), Y0)
	pass("max", func(h int, last bool) {
		if !last {
			VMAXPS(xi(h), Y0, Y0)
			return
		}
		VMASKMOVPS(xi(h), masks256[h], Y1)
		VMOVUPS(kv("negInf"), Y2)
		VBLENDVPS(masks256[h], Y1, Y2, Y1)
		VMAXPS(Y1, Y0, Y0)
	})
	VEXTRACTF128(U8(1), Y0, X1)
	VMAXPS(X1, X0, X0)
	VPERMILPS(U8(0x4e), X0, X1)
	VMAXPS(X1, X0, X0)
	VPERMILPS(U8(0xb1), X0, X1)
	VMAXPS(X1, X0, X0)
	VBROADCASTSS(X0, Y0)

	Comment("dst[i] = e^(x[i] - m); Y10-Y13: lanes 0-3, 4-7, 8-11, 12-15 of the sum, in float64.")
	sum := []VecPhysical{Y10, Y11, Y12, Y13}
	for _, r := range sum {
		VXORPD(r, r, r)
	}
	pass("exp", func(h int, last bool) {
		load256(xi(h), Y1, h, last)
		VSUBPS(Y0, Y1, Y1)
		exp256(Y1, Y2, []VecPhysical{Y3, Y4, Y5, Y6}, false)
		if last {
			VANDPS(masks256[h], Y2, Y2)
		}
		store256(Y2, di(h), h, last)
		accumulate256(Y2, sum[2*h:], Y3, Y4)
	})
	Comment("Add the sixteen lanes pairwise: lane i and i+8, then i+4, i+2, i+1.")
	laneSum256(sum)
	Comment("Y0 = float32(1 / sum) in every lane.")
	VCVTSS2SD(scalarConst("one"), X11, X11)
	VDIVSD(X10, X11, X11)
	VCVTSD2SS(X11, X11, X11)
	VBROADCASTSS(X11, Y0)

	Comment("dst[i] *= 1 / sum")
	pass("scale", func(h int, last bool) {
		if !last {
			VMULPS(di(h), Y0, Y1)
			VMOVUPS(Y1, di(h))
			return
		}
		VMASKMOVPS(di(h), masks256[h], Y1)
		VMULPS(Y1, Y0, Y1)
		VMASKMOVPS(Y1, masks256[h], di(h))
	})
}
