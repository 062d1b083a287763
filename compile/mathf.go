package compile

import "math"

// Float32 transcendental functions for the hot kernels. They are accurate to a
// few units in the last place of float32 (checked against float64 math in
// mathf_test.go), which keeps logits within the project's 1e-4 of PyTorch, and
// they avoid float64 library calls per element.

const (
	ln2Hi  = 0.693145751953125     // ln 2, high bits (exact product with small n)
	ln2Lo  = 1.428606765330187e-06 // ln 2 - ln2Hi
	log2e  = 1.4426950408889634
	expMax = 88.72283905206835  // above: +Inf
	expMin = -87.33654475055310 // below: 0 (no subnormal results)
)

// expf is e^x: x = n ln2 + r with |r| <= ln2/2, e^r by a degree-6 polynomial
// (truncation below 1.2e-7 relative), scaled by 2^n through the exponent bits.
func expf(x float32) float32 {
	switch {
	case x != x:
		return x
	case x > expMax:
		return float32(math.Inf(1))
	case x < expMin:
		return 0
	}
	// round to nearest by adding 1.5 * 2^23: exact IEEE float32 arithmetic
	n := (x*log2e + 12582912) - 12582912
	r := x - n*ln2Hi - n*ln2Lo
	p := 1 + r*(1+r*(0.5+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720))))))
	return p * math.Float32frombits(uint32(int32(n)+127)<<23)
}

// erfcore returns erf(|x|) for the A&S 7.1.26 rational approximation
// (absolute error below 1.5e-7), given e = exp(-x^2).
func erfAbs(ax, e float32) float32 {
	t := 1 / (1 + 0.3275911*ax)
	poly := t * (0.254829592 + t*(-0.284496736+t*(1.421413741+t*(-1.453152027+t*1.061405429))))
	return 1 - poly*e
}

// erff is erf(x).
func erff(x float32) float32 {
	ax := float32(math.Abs(float64(x)))
	if ax > 9 {
		ax = 9
	}
	v := erfAbs(ax, expf(-ax*ax))
	if x < 0 {
		return -v
	}
	return v
}

const invSqrt2 = 0.7071067811865476
const invSqrt2Pi = 0.3989422804014327

// geluF is x Phi(x) with Phi(x) = (1 + erf(x / sqrt 2)) / 2.
func geluF(x float32) float32 {
	return 0.5 * x * (1 + erff(x*invSqrt2))
}

// geluGradF is d/dx x Phi(x) = Phi(x) + x phi(x); exp(-x^2/2) is shared by
// erf(x / sqrt 2) and phi.
func geluGradF(x float32) float32 {
	z := x * invSqrt2
	az := float32(math.Abs(float64(z)))
	if az > 9 {
		az = 9
	}
	e := expf(-az * az)
	er := erfAbs(az, e)
	if z < 0 {
		er = -er
	}
	return 0.5*(1+er) + x*invSqrt2Pi*e
}
