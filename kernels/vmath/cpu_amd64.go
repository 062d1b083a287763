//go:build amd64 && !purego

package vmath

// cpuFeatures are the instruction sets the assembly kernels need, each both
// reported by CPUID and enabled by the OS (its register state saved by XSAVE).
type cpuFeatures struct {
	avx2FMA bool // AVX, AVX2 and FMA3 with YMM state
	avx512  bool // AVX512F with opmask and ZMM state
}

func detectCPU() cpuFeatures {
	const (
		// CPUID.1:ECX
		fma     = 1 << 12
		osxsave = 1 << 27
		avx     = 1 << 28
		// CPUID.(7,0):EBX
		avx2    = 1 << 5
		avx512f = 1 << 16
		// XCR0
		ymmState = 1<<1 | 1<<2
		zmmState = 1<<5 | 1<<6 | 1<<7
	)
	var f cpuFeatures
	maxLeaf, _, _, _ := cpuid(0, 0)
	if maxLeaf < 7 {
		return f
	}
	_, _, ecx1, _ := cpuid(1, 0)
	if ecx1&osxsave == 0 {
		return f
	}
	xcr0, _ := xgetbv()
	_, ebx7, _, _ := cpuid(7, 0)
	osYMM := xcr0&ymmState == ymmState
	osZMM := osYMM && xcr0&zmmState == zmmState
	f.avx2FMA = osYMM && ecx1&avx != 0 && ecx1&fma != 0 && ebx7&avx2 != 0
	f.avx512 = osZMM && f.avx2FMA && ebx7&avx512f != 0
	return f
}

// archVariants lists the assembly variants in order of preference.
func archVariants() []*variant {
	f := detectCPU()
	return []*variant{
		{
			name: "avx512", env: "HYPERAT_NOAVX512", supported: f.avx512,
			exp: expAVX512, gelu: geluAVX512, geluGrad: geluGradAVX512, softmaxRow: softmaxRowAVX512,
			arith: [4]func(dst, x, y []float32){addAVX512, subAVX512, mulAVX512, divAVX512},
		},
		{
			name: "avx2", env: "HYPERAT_NOAVX2", supported: f.avx2FMA,
			exp: expAVX2, gelu: geluAVX2, geluGrad: geluGradAVX2, softmaxRow: softmaxRowAVX2,
			arith: [4]func(dst, x, y []float32){addAVX2, subAVX2, mulAVX2, divAVX2},
		},
	}
}
