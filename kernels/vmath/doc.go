// Package vmath holds vectorized float32 kernels for the transcendental
// element-wise work of a Vision Transformer: Exp, Gelu and GeluGrad (the
// exact, erf form of GELU and its derivative) and SoftmaxRows; and for the
// rest of its row-wise work, elementwise arithmetic (Arith) and the rows of
// LayerNorm and its gradient (RowSums, NormRow, NormGradSums, NormGradRow)
// and of the softmax's gradient (SoftmaxGradRows).
//
// # Algorithms
//
// Exp clamps x to [expMin, 89], takes n = round(x log2 e) and the reduced
// argument r = x - n ln2 in two fused multiply-adds (ln 2 split into a float32
// and the float32 rounding of the rest), so that |r| <= ln2/2 with an error
// far below a unit in the last place. e^r is a degree-5 polynomial with
// constant term 1 (e^0 is exactly 1) whose other coefficients minimize the
// largest relative error (9.2e-8), evaluated by Horner's rule with fused
// multiply-adds; the result is p 2^n (VSCALEFPS). Below expMin = -87.33654,
// where e^x would be subnormal, the result is 0: subnormal outputs would cost
// microcode assists in the arithmetic that follows. Above 88.72284 it is +Inf,
// and a NaN stays NaN.
//
// Gelu and GeluGrad use Abramowitz & Stegun 7.1.26 for erfc(z), z = |x|/sqrt2:
//
//	erfc(z) = t (a1 + t (a2 + t (a3 + t (a4 + t a5)))) e^-z²,  t = 1 / (1 + p z)
//
// (absolute error 1.5e-7), with t from an exact division (VDIVPS) and
// e^-z² = 2^s, s = -x² log2(e) / 2, as p 2^n with n = round(s) and p = 2^(s-n)
// from a degree-5 polynomial of the same kind as Exp's. |x| is clamped at
// 9 sqrt2, which keeps every intermediate a normal float32. Then
//
//	Gelu(x)  = x Phi(x) = max(0, x) - |x| erfc(z)/2
//	Gelu'(x) = Phi(x) + x phi(x) = x >= 0 ? 1 - g : g,  g = erfc(z)/2 - |x| phi(x)
//
// one expression for both signs, without the cancellation of 1 + erf(z) for
// negative x, and with e^-z² shared by erfc and phi.
//
// SoftmaxRows finds the largest element m of a row, stores e^(x - m) by the
// Exp kernel and sums them in float64, then multiplies the row by
// float32(1 / sum). The sum is kept in float64 so that its rounding error
// (below n 2^-53 relative) is negligible for any row length, where float32
// lanes would add up to about n/16 ulps; the conversions cost little beside
// the exponentials. It is accumulated in a fixed order, sixteen lanes
// (element i in lane i % 16) added pairwise at the end, so every variant
// gives the same sum.
//
// The LayerNorm kernels accumulate their sums (x and x², for the mean and the
// variance; dy g and dy g (x - m) s, for the gradient) in float64 the same
// way, the last partial block of sixteen padded with zeros, and round every
// elementwise operation to float32 on its own, as the plain-Go twins spell
// out.
//
// # Accuracy
//
// Checked against float64 math over every float32 input (TestExhaustive):
// Exp within 1.7e-7 relative (bound 4e-7), the erf inside Gelu within 5e-7
// absolute (bound 6e-7), Gelu within 1.4e-7 max(1, |x|) (bound 6e-7
// max(1, |x|)) and GeluGrad within 2.3e-7 max(1, |x|) (bound 1e-6 max(1, |x|)).
// These are the bounds of the scalar functions of package compile.
//
// # Variants and determinism
//
// Each kernel exists three times: for AVX-512 (AVX512F, 16 lanes), for AVX2
// with FMA (8 lanes) in Go assembly generated with avo by ../../_asm (the
// generator of package kernels' assembly too, go generate runs it), and in
// plain Go. All three compute the element functions of scalar.go operation
// for operation, with the same roundings: the plain-Go code emulates the
// float32 fused multiply-add exactly (fma32), so the variants agree bit for
// bit (TestVariants, and TestExhaustive over every float32). Results
// therefore depend neither on the CPU nor on the build, and rows of
// SoftmaxRows are independent of each other.
//
// The variant is chosen once, at initialization: the first of AVX-512 and
// AVX2 that the CPU and OS support (as package kernels/cpu reads them),
// unless HYPERAT_NOAVX512=1 or HYPERAT_NOAVX2=1 turns it off, and plain Go
// otherwise or under the purego build tag. Variant reports the choice.
//
// # Speed
//
// On one shared AMD Zen 4 core (AVX-512 executed as two 256-bit halves), in
// ns per element of thread CPU time: Exp 0.12, Gelu 0.26-0.3, GeluGrad 0.3,
// SoftmaxRows 0.35 (rows of 1000) to 0.42 (rows of 197); AVX2 about 1.3 to
// 2.5 times that. The plain-Go code, which pays for its exact float32 fused
// multiply-adds, takes 20 to 50 ns.
//
//go:generate go run -C ../../_asm . -out ../kernels/vmath/vmath_amd64.s -stubs ../kernels/vmath/stubs_amd64.go -twins ../kernels/vmath/twins.go -consts ../kernels/vmath/consts.go -pkg vmath
package vmath
