// Package cpu generates the amd64 assembly of package kernels/cpu: the CPUID
// and XGETBV instructions, which feature detection needs and Go cannot
// express.
package cpu

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/reg"
)

// Build emits the two probes that feature detection needs: CPUID for the
// instruction sets and XGETBV for the register state the OS saves.
func Build() {
	TEXT("cpuid", NOSPLIT, "func(eaxArg, ecxArg uint32) (eax, ebx, ecx, edx uint32)")
	Doc("cpuid executes the CPUID instruction with EAX=eaxArg and ECX=ecxArg.")
	Load(Param("eaxArg"), EAX)
	Load(Param("ecxArg"), ECX)
	CPUID()
	Store(EAX, Return("eax"))
	Store(EBX, Return("ebx"))
	Store(ECX, Return("ecx"))
	Store(EDX, Return("edx"))
	RET()

	TEXT("xgetbv", NOSPLIT, "func() (eax, edx uint32)")
	Doc("xgetbv reads the extended control register XCR0.",
		"It must only be called when CPUID reports OSXSAVE.")
	XORL(ECX, ECX)
	XGETBV()
	Store(EAX, Return("eax"))
	Store(EDX, Return("edx"))
	RET()
}
