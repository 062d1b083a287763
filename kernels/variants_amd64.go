//go:build amd64 && !purego

package kernels

import "github.com/hyperat/hyperat/kernels/cpu"

// archVariants lists the assembly sgemm variants in order of preference.
func archVariants() []*sgemmVariant {
	return []*sgemmVariant{
		newVariant(sgemmVariant{
			name: "avx512", env: cpu.NoAVX512, supported: cpu.AVX512(),
			nr: 32, kc: 384, nc: 4096,
			kernels:    avx512Kernels,
			packBPlain: packB32AVX512, packBTrans: packBTrans32AVX512,
		}),
		newVariant(sgemmVariant{
			name: "avx2", env: cpu.NoAVX2, supported: cpu.AVX2FMA(),
			nr: 16, kc: 256, nc: 4096,
			kernels:    avx2Kernels,
			packBPlain: packB16AVX2, packBTrans: packBTrans16AVX2,
		}),
	}
}

// archBF16 is the assembly variant of the bfloat16 products (BF16).
func archBF16() *sgemmVariant {
	return newVariant(sgemmVariant{
		name: "avx512bf16", env: cpu.NoAVX512BF16, supported: cpu.AVX512BF16(),
		nr: 32, kc: bf16KC, nc: 4096,
		kernels: bf16Kernels,
		bf16:    &bf16Packers{rows: packRowsBF16AVX512, pairs: packPairsBF16AVX512, trans: packBTransBF16AVX512},
	})
}
