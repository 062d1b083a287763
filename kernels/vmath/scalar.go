package vmath

import "math"

// The element functions: the definition that every kernel of the package
// follows operation for operation, so that all variants give the same bits.
// Each float32 operation here is one vector instruction in the assembly:
// fma32 a fused multiply-add, roundEven VRNDSCALEPS (VROUNDPS), scalef
// VSCALEFPS, minps and maxps VMINPS and VMAXPS with their NaN rules. Every
// product that feeds an addition outside fma32 is rounded by an explicit
// conversion, so a compiler that fuses x*y + z (as Go may on arm64, for
// example) changes nothing.

// fma32 is a*b + c rounded once to float32, as the FMA instructions compute it.
func fma32(a, b, c float32) float32 {
	// The product is exact in float64 (at most 48 significant bits), so s is
	// a*b + c rounded once to float64. Rounding s again to float32 gives the
	// right answer unless s lies exactly halfway between two float32 values
	// (its low 28 bits are then clear) and the float64 sum was inexact. Then
	// s is moved one float64 step towards the exact sum (rounding to odd),
	// which makes the rounding to float32 correct.
	p, q := float64(a)*float64(b), float64(c)
	s := p + q
	bits := math.Float64bits(s)
	if bits<<36 == 0 {
		t := s - p
		if e := (p - (s - t)) + (q - t); e != 0 && e == e { // p + q == s + e exactly
			bits += 1 - (math.Float64bits(e)^bits)>>63*2 // one step up in magnitude if e has the sign of s, else down
		}
	}
	return float32(math.Float64frombits(bits))
}

// roundEven is x rounded to an integer, halves to even (VRNDSCALEPS $0).
func roundEven(x float32) float32 { return float32(math.RoundToEven(float64(x))) }

// scalef is p * 2^n rounded once, for integral n in [-1022, 1023] (VSCALEFPS).
func scalef(p, n float32) float32 {
	return float32(float64(p) * math.Float64frombits(uint64(int64(n)+1023)<<52))
}

// minps is VMINPS with a as its first and b as its second source: a if a < b,
// else b (so b when either is NaN).
func minps(a, b float32) float32 {
	if a < b {
		return a
	}
	return b
}

// maxps is VMAXPS: a if a > b, else b (so b when either is NaN).
func maxps(a, b float32) float32 {
	if a > b {
		return a
	}
	return b
}

// abs32 clears the sign bit (VANDPS with 0x7fffffff).
func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

// expPoly is e^r for |r| <= ln2/2 (slightly more is fine).
func expPoly(r float32) float32 {
	p := fma32(expC5, r, expC4)
	p = fma32(p, r, expC3)
	p = fma32(p, r, expC2)
	p = fma32(p, r, expC1)
	return fma32(p, r, 1)
}

// expElem is e^x: 0 below expMin, +Inf above ln MaxFloat32, NaN for NaN.
func expElem(x float32) float32 {
	c := maxps(expMin, x)
	c = minps(expMax, c)
	n := roundEven(c * log2e)
	r := fma32(-n, ln2Hi, c)
	r = fma32(-n, ln2Lo, r)
	y := scalef(expPoly(r), n)
	if x < expMin {
		return 0
	}
	return y
}

// exp2Poly is 2^f for |f| <= 1/2.
func exp2Poly(f float32) float32 {
	p := fma32(exp2C5, f, exp2C4)
	p = fma32(p, f, exp2C3)
	p = fma32(p, f, exp2C2)
	p = fma32(p, f, exp2C1)
	return fma32(p, f, 1)
}

// erfcParts returns, for ax in [0, geluMaxAbs], the factors of
// erfc(z)/2 = r p 2^n, z = ax/sqrt2: r from A&S 7.1.26, and p 2^n = e^-z²
// with n an integer in [-117, 0].
func erfcParts(ax float32) (r, p, n float32) {
	t := 1 / fma32(ax, asP, 1)
	r = fma32(asA5, t, asA4)
	r = fma32(r, t, asA3)
	r = fma32(r, t, asA2)
	r = fma32(r, t, asA1)
	r = r * t
	s := float32(ax * ax * negHalfLog2e) // rounded here, not fused into s - n
	n = roundEven(s)
	return r, exp2Poly(s - n), n
}

// geluElem is x Phi(x) = max(0, x) - |x| erfc(|x|/sqrt2)/2.
func geluElem(x float32) float32 {
	ax := minps(geluMaxAbs, abs32(x))
	r, p, n := erfcParts(ax)
	return fma32(-ax, scalef(r*p, n), maxps(0, x))
}

// geluGradElem is Phi(x) + x phi(x) = [x >= 0] -+ g with
// g = erfc(|x|/sqrt2)/2 - |x| phi(x) = (r - |x|/sqrt(2 pi)) p 2^n.
func geluGradElem(x float32) float32 {
	ax := minps(geluMaxAbs, abs32(x))
	r, p, n := erfcParts(ax)
	g := scalef(fma32(-ax, invSqrt2Pi, r)*p, n)
	if x >= 0 {
		return 1 - g
	}
	return g
}
