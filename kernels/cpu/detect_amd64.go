//go:build amd64 && !purego

package cpu

// probes reports whether detect reads the CPU: this build has CPUID.
const probes = true

// detect reads the features from CPUID and XCR0.
func detect() features {
	const (
		// CPUID.1:ECX
		fma     = 1 << 12
		osxsave = 1 << 27
		avx     = 1 << 28
		// CPUID.(7,0):EBX
		avx2     = 1 << 5
		avx512f  = 1 << 16
		avx512bw = 1 << 30
		// CPUID.(7,1):EAX
		avx512bf16 = 1 << 5
		// XCR0
		ymmState = 1<<1 | 1<<2
		zmmState = 1<<5 | 1<<6 | 1<<7
	)
	var f features
	maxLeaf, _, _, _ := cpuid(0, 0)
	if maxLeaf < 7 {
		return f
	}
	_, _, ecx1, _ := cpuid(1, 0)
	if ecx1&osxsave == 0 {
		return f
	}
	xcr0, _ := xgetbv()
	maxSub7, ebx7, _, _ := cpuid(7, 0)
	osYMM := xcr0&ymmState == ymmState
	osZMM := osYMM && xcr0&zmmState == zmmState
	f.avx2FMA = osYMM && ecx1&avx != 0 && ecx1&fma != 0 && ebx7&avx2 != 0
	f.avx512 = osZMM && f.avx2FMA && ebx7&avx512f != 0
	if maxSub7 >= 1 {
		eax71, _, _, _ := cpuid(7, 1)
		f.avx512BF16 = f.avx512 && ebx7&avx512bw != 0 && eax71&avx512bf16 != 0
	}
	return f
}
