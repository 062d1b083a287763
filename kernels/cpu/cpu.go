// Package cpu reports which instruction sets the assembly kernels of packages
// kernels and kernels/vmath may use, and the environment switches that turn
// them off.
//
// The features are read once, at initialization, from CPUID and XGETBV: an
// instruction set counts only when the CPU reports it and the OS saves its
// register state. Under the purego build tag, and off amd64, no feature is
// reported, so that the plain-Go code runs.
//
// The CPUID and XGETBV probes (cpuid_amd64.s, stubs_amd64.go) are generated
// by the avo program in ../../_asm; go generate in this directory runs it.
package cpu

import "os"

// The environment switches: set to 1, each turns off the kernels of one
// instruction set, whatever the CPU supports.
const (
	NoAVX512     = "HYPERAT_NOAVX512"
	NoAVX2       = "HYPERAT_NOAVX2"
	NoAVX512BF16 = "HYPERAT_NOAVX512BF16"
)

// features are the instruction sets the kernels need.
type features struct {
	avx2FMA    bool // AVX, AVX2 and FMA3 with YMM state
	avx512     bool // AVX512F with opmask and ZMM state, and avx2FMA
	avx512BF16 bool // AVX512_BF16 and AVX512BW, and avx512
}

// detected holds the features of this CPU and OS, read once.
var detected = detect()

// AVX2FMA reports whether the CPU and the OS support AVX, AVX2 and FMA3.
func AVX2FMA() bool { return detected.avx2FMA }

// AVX512 reports whether the CPU and the OS support AVX512F (and AVX2FMA)
// with the opmask and ZMM registers.
func AVX512() bool { return detected.avx512 }

// AVX512BF16 reports whether the CPU and the OS support AVX512_BF16 (the
// bfloat16 dot products and conversions) and AVX512BW, with AVX512.
func AVX512BF16() bool { return detected.avx512BF16 }

// Off reports whether the environment switch env (NoAVX512, NoAVX2 or
// NoAVX512BF16) is set to 1. It reads the environment at each call; the
// empty name is never off.
func Off(env string) bool { return env != "" && os.Getenv(env) == "1" }

//go:generate go run -C ../../_asm . -out ../kernels/cpu/cpuid_amd64.s -stubs ../kernels/cpu/stubs_amd64.go -pkg cpu
