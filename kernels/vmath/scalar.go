package vmath

import "math"

// The element functions: the definition that every kernel of the package
// follows operation for operation, so that all variants give the same bits.
// Each float32 operation here is one vector instruction in the assembly:
// fma32 a fused multiply-add, roundEven VRNDSCALEPS (VROUNDPS), scalef
// VSCALEFPS, minps and maxps VMINPS and VMAXPS with their NaN rules. No
// product here feeds an addition outside fma32, so a compiler that fuses
// x*y + z (as Go may on arm64, for example) changes nothing.

// fma32 is a*b + c rounded once to float32, as the FMA instructions compute it.
func fma32(a, b, c float32) float32 {
	p := float64(a) * float64(b) // exact: at most 48 significant bits
	s := p + float64(c)          // a*b + c rounded to float64
	// Rounding s again to float32 gives the right answer unless s lies
	// exactly halfway between two float32 values (its low 28 bits are then
	// clear) while the float64 sum was inexact.
	if math.Float64bits(s)&(1<<28-1) != 0 {
		return float32(s)
	}
	return fma32Slow(p, float64(c), s)
}

// fma32Slow finishes fma32 when s = p + c rounded to float64 may be a float32
// midpoint: it rounds to odd instead (moves an inexact s one float64 step
// towards the exact sum), which makes the final rounding correct.
func fma32Slow(p, c, s float64) float32 {
	if s == 0 || math.IsInf(s, 0) || math.IsNaN(s) {
		return float32(s)
	}
	bb := s - p
	e := (p - (s - bb)) + (c - bb) // p + c == s + e exactly
	if e == 0 {
		return float32(s)
	}
	b := math.Float64bits(s)
	if (e > 0) == (s > 0) {
		b++
	} else {
		b--
	}
	return float32(math.Float64frombits(b))
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

// expNeg is e^-u for u in [0, 81]: no clamping needed, and one step of
// range reduction is enough for the error of erfc.
func expNeg(u float32) float32 {
	n := roundEven(u * -log2e)
	r := fma32(-n, ln2Hi, -u)
	return scalef(expPoly(r), n)
}

// halfErfc is erfc(z)/2 for z in [0, 9], with e = e^(-z^2) returned too.
func halfErfc(z float32) (h, e float32) {
	t := 1 / fma32(z, asP, 1)
	q := fma32(asA5, t, asA4)
	q = fma32(q, t, asA3)
	q = fma32(q, t, asA2)
	q = fma32(q, t, asA1)
	q = q * t
	e = expNeg(z * z)
	return q * e, e
}

// geluElem is x Phi(x) = relu(x) - |x| erfc(|x|/sqrt2)/2.
func geluElem(x float32) float32 {
	ax := minps(geluMaxAbs, abs32(x))
	h, _ := halfErfc(ax * invSqrt2)
	return fma32(-ax, h, maxps(0, x))
}

// geluGradElem is Phi(x) + x phi(x) = [x >= 0] -+ (erfc(|x|/sqrt2)/2 - |x| phi(x)).
func geluGradElem(x float32) float32 {
	ax := minps(geluMaxAbs, abs32(x))
	h, e := halfErfc(ax * invSqrt2)
	g := fma32(-(ax * invSqrt2Pi), e, h)
	if x >= 0 {
		return 1 - g
	}
	return g
}
