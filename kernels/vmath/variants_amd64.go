//go:build amd64 && !purego

package vmath

import "github.com/hyperat/hyperat/kernels/cpu"

// archVariants lists the assembly variants in order of preference.
func archVariants() []*variant {
	return []*variant{
		{
			name: "avx512", env: cpu.NoAVX512, supported: cpu.AVX512(),
			exp: expAVX512, gelu: geluAVX512, geluGrad: geluGradAVX512, softmaxRow: softmaxRowAVX512, softmaxRow2: softmaxRow2AVX512,
			arith:   [4]func(dst, x, y []float32){addAVX512, subAVX512, mulAVX512, divAVX512},
			rowSums: rowSumsAVX512, normRow: normRowAVX512, gradSums: normGradSumsAVX512, gradRow: normGradRowAVX512,
			smGradRow: softmaxGradRowAVX512,
		},
		{
			name: "avx2", env: cpu.NoAVX2, supported: cpu.AVX2FMA(),
			exp: expAVX2, gelu: geluAVX2, geluGrad: geluGradAVX2, softmaxRow: softmaxRowAVX2, softmaxRow2: softmaxRow2AVX2,
			arith:   [4]func(dst, x, y []float32){addAVX2, subAVX2, mulAVX2, divAVX2},
			rowSums: rowSumsAVX2, normRow: normRowAVX2, gradSums: normGradSumsAVX2, gradRow: normGradRowAVX2,
			smGradRow: softmaxGradRowAVX2,
		},
	}
}
