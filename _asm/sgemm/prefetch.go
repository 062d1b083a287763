package sgemm

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// genPrefetchRows emits prefetchRows: PREFETCHT0 on every cache line of a
// strided block of rows, for the attention kernel to ask for the next
// head's operands while the current head computes. A prefetch never
// faults and changes nothing but the cache, so its plain-Go twin (the
// other builds) does nothing.
func genPrefetchRows() {
	TEXT("prefetchRows", NOSPLIT, "func(x []float32, rows, ld, n int)")
	Doc(
		"prefetchRows asks the cache for the lines of rows rows of n floats, ld",
		"floats apart, from x[0] on: row r is x[r*ld : r*ld+n]. It reads nothing",
		"and cannot fault, so that the caller's later loads find the data in L1.",
	)
	Pragma("noescape")
	x, rows, ld, bytes, off := RSI, RCX, RDX, RBX, R8
	Load(Param("x").Base(), x)
	Load(Param("rows"), rows)
	Load(Param("ld"), ld)
	SHLQ(U8(2), ld)
	Load(Param("n"), bytes)
	SHLQ(U8(2), bytes)
	TESTQ(rows, rows)
	JLE(LabelRef("prefetchRows_done"))
	TESTQ(bytes, bytes)
	JLE(LabelRef("prefetchRows_done"))
	Label("prefetchRows_row")
	XORQ(off, off)
	Label("prefetchRows_line")
	PREFETCHT0(Mem{Base: x, Index: off, Scale: 1})
	ADDQ(U8(64), off)
	CMPQ(off, bytes)
	JLT(LabelRef("prefetchRows_line"))
	Comment("The line of the row's last float, which the steps of 64 bytes may miss.")
	PREFETCHT0(Mem{Base: x, Index: bytes, Scale: 1, Disp: -4})
	ADDQ(ld, x)
	DECQ(rows)
	JNZ(LabelRef("prefetchRows_row"))
	Label("prefetchRows_done")
	RET()
}
