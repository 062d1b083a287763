//go:build amd64 && !purego

package kernels

// cpuFeatures are the instruction sets the assembly kernels need, each both
// reported by CPUID and enabled by the OS (its register state saved by XSAVE).
type cpuFeatures struct {
	avx2FMA bool // AVX, AVX2 and FMA3 with YMM state
	avx512  bool // AVX512F with opmask and ZMM state
}

// Features reports whether the CPU and the OS support the AVX2+FMA and the
// AVX-512 kernels, for the packages with assembly of their own (vmath).
func Features() (avx2FMA, avx512 bool) {
	f := detectCPU()
	return f.avx2FMA, f.avx512
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

// archVariants lists the assembly sgemm variants in order of preference.
func archVariants() []*sgemmVariant {
	f := detectCPU()
	return []*sgemmVariant{
		newVariant(sgemmVariant{
			name: "avx512", env: "HYPERAT_NOAVX512", supported: f.avx512,
			nr: 32, kc: 384, nc: 4096,
			kernels:    avx512Kernels,
			packBPlain: packB32AVX512, packBTrans: packBTrans32AVX512,
		}),
		newVariant(sgemmVariant{
			name: "avx2", env: "HYPERAT_NOAVX2", supported: f.avx2FMA,
			nr: 16, kc: 256, nc: 4096,
			kernels:    avx2Kernels,
			packBPlain: packB16AVX2, packBTrans: packBTrans16AVX2,
		}),
	}
}
