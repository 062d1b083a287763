package sgemm

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The bfloat16 products: A and B are rounded to bfloat16 and packed as
// pairs, two elements consecutive along k in one 32-bit word (the element
// with the even k in the low half), and the kernels sum the products of a
// pair into each float32 accumulator with one VDPBF16PS. The packers round
// with VCVTNE2PS2BF16. The slices hold the pairs' bits under the type
// float32, so that the packed buffers and the kernels' signature are those
// of the float32 products.

func bf16KernelDoc(name string, mr, nr int) []string {
	return []string{
		fmt.Sprintf("%s computes one rows×cols tile (rows ≤ %d, cols ≤ %d) of C from an", name, mr, nr),
		fmt.Sprintf("A micro-panel of %d rows of bfloat16 pairs, pair (i, t) at a[i*rs+t*ks] holding", mr),
		"the elements (i, 2t) and (i, 2t+1), and a packed B micro-panel of pairs,",
		fmt.Sprintf("pair (t, j) at b[t*%d+j] holding the elements (2t, j) and (2t+1, j). It is:", nr),
		"",
		"	for i := 0; i < rows; i++ {",
		"		for j := 0; j < cols; j++ {",
		"			var s float32",
		"			for t := 0; t < k; t++ {",
		fmt.Sprintf("				s = dotBF16(s, b[t*%d+j], a[i*rs+t*ks])", nr),
		"			}",
		"			switch {",
		"			case bias != nil:",
		"				c[i*ldc+j] = float32(alpha*s) + bias[j]",
		"			case beta == 0:",
		"				c[i*ldc+j] = alpha * s",
		"			default:",
		"				c[i*ldc+j] = float32(alpha*s) + float32(beta*c[i*ldc+j])",
		"			}",
		"		}",
		"	}",
		"",
		"bit for bit, with a and b read as pairs (pairsOf): dotBF16 is what",
		"VDPBF16PS computes in one lane. It needs",
		fmt.Sprintf("k ≥ 1 pairs, 1 ≤ rows ≤ %d and 1 ≤ cols ≤ %d; all %d rows of the A panel and", mr, nr, mr),
		fmt.Sprintf("all %d columns of the B panel are read, but only the rows×cols tile of C", nr),
		"is touched, and C is not read when beta is 0 or bias is not nil (bias, a",
		"row of at least cols values, then takes the place of beta*C).",
	}
}

func packRowsBF16Doc(name string) []string {
	return []string{
		fmt.Sprintf("%s rounds the first n floats of rows [0, rows) of src, ld", name),
		"apart, to bfloat16 pairs, row r's at dst[r*pitch:], the last pair of a",
		"row completed by a zero when n is odd. It is:",
		"",
		"	for r := 0; r < rows; r++ {",
		"		for t := 0; t < (n+1)/2; t++ {",
		"			hi := float32(0)",
		"			if 2*t+1 < n {",
		"				hi = src[r*ld+2*t+1]",
		"			}",
		"			dst[r*pitch+t] = pairBF16(src[r*ld+2*t], hi)",
		"		}",
		"	}",
		"",
		"with dst read as pairs. rows and n must be positive.",
	}
}

func packPairsBF16Doc(name string) []string {
	return []string{
		fmt.Sprintf("%s rounds rows [0, rows) of cols columns of src, ld apart,", name),
		"to bfloat16 and pairs rows 2t and 2t+1 (a zero row after an odd last one):",
		"chunk c of 16 columns of pair t goes to dst[c/2*pstride+c%2*16+t*tstride:]",
		"(a packed B panel of 32 columns per pstride, or, with one chunk, the",
		"k-major pairs of a transposed A panel), zeros past column cols. It is:",
		"",
		"	for c := 0; c < chunks; c++ {",
		"		for t := 0; t < (rows+1)/2; t++ {",
		"			for j := 0; j < 16; j++ {",
		"				lo, hi := float32(0), float32(0)",
		"				if col := 16*c + j; col < cols {",
		"					lo = src[2*t*ld+col]",
		"					if 2*t+1 < rows {",
		"						hi = src[(2*t+1)*ld+col]",
		"					}",
		"				}",
		"				dst[c/2*pstride+c%2*16+t*tstride+j] = pairBF16(lo, hi)",
		"			}",
		"		}",
		"	}",
		"",
		"with dst read as pairs. rows, cols and chunks must be positive, cols at most 16*chunks.",
	}
}

func packBTransBF16Doc(name string, nr int) []string {
	return []string{
		fmt.Sprintf("%s packs a %d-column panel of op(B) from B stored transposed", name, nr),
		"(column j of op(B) is row j of src) as bfloat16 pairs, with zeros past",
		"its first cols columns. It is:",
		"",
		"	for t := 0; t < k32/2; t++ {",
		fmt.Sprintf("		for j := 0; j < %d; j++ {", nr),
		fmt.Sprintf("			dst[t*%d+j] = 0", nr),
		"			if j < cols {",
		fmt.Sprintf("				dst[t*%d+j] = pairBF16(src[j*ldb+2*t], src[j*ldb+2*t+1])", nr),
		"			}",
		"		}",
		"	}",
		"",
		fmt.Sprintf("with dst read as pairs. k32 must be a positive multiple of 32 and cols at most %d.", nr),
	}
}

// lowBits sets r (32 bits) to the low n bits set, for n in CL, 0 ≤ n < 32.
func lowBits(r Register) {
	MOVL(U32(1), r)
	SHLL(CL, r)
	DECL(r)
}

// genPackRowsBF16 emits packRowsBF16AVX512: row after row, 32 floats (16
// pairs) a step, then the last ones through masks computed once.
func genPackRowsBF16() {
	const name = "packRowsBF16AVX512"
	TEXT(name, NOSPLIT, "func(dst, src []float32, ld, rows, n, pitch int)")
	Doc(packRowsBF16Doc(name)...)
	Pragma("noescape")
	dst, src, ld, rows, n, pitch := RDI, RSI, R8, R9, R10, R11
	sp, dp, count, bits := R12, R13, RDX, RAX
	Load(Param("dst").Base(), dst)
	Load(Param("src").Base(), src)
	Load(Param("ld"), ld)
	SHLQ(U8(2), ld)
	Load(Param("rows"), rows)
	Load(Param("n"), n)
	Load(Param("pitch"), pitch)
	SHLQ(U8(2), pitch)
	Comment("Masks of the last n%32 floats, 16 per vector, and of their pairs.")
	MOVQ(n, RCX)
	ANDQ(U8(31), RCX)
	lowBits(bits.As32())
	KMOVW(bits.As32(), K1)
	SHRL(U8(16), bits.As32())
	KMOVW(bits.As32(), K2)
	INCQ(RCX)
	SHRQ(U8(1), RCX)
	lowBits(bits.As32())
	KMOVW(bits.As32(), K3)

	Label(name + "_row")
	MOVQ(src, sp)
	MOVQ(dst, dp)
	MOVQ(n, count)
	SHRQ(U8(5), count)
	JZ(LabelRef(name + "_tail"))
	Label(name + "_loop")
	VMOVUPS(Mem{Base: sp, Disp: 64}, Z1)
	opVCVTNE2PS2BF16.emit(Mem{Base: sp}, Z1, Z0) // floats 0..15 low, 16..31 high
	VMOVUPS(Z0, Mem{Base: dp})
	ADDQ(U32(128), sp)
	ADDQ(U8(64), dp)
	DECQ(count)
	JNZ(LabelRef(name + "_loop"))

	Label(name + "_tail")
	TESTQ(U32(31), n)
	JZ(LabelRef(name + "_next"))
	VMOVUPS_Z(Mem{Base: sp}, K1, Z0)
	VMOVUPS_Z(Mem{Base: sp, Disp: 64}, K2, Z1)
	opVCVTNE2PS2BF16.emit(Z0, Z1, Z2)
	VMOVDQU32(Z2, K3, Mem{Base: dp})

	Label(name + "_next")
	ADDQ(ld, src)
	ADDQ(pitch, dst)
	DECQ(rows)
	JNZ(LabelRef(name + "_row"))
	VZEROUPPER()
	RET()
}

var pairIndexMem *Mem

// pairIndex returns the VPERMW table that interleaves the two halves of a
// register of 32 words: word 2j takes word j, word 2j+1 word 16+j.
func pairIndex() Mem {
	if pairIndexMem == nil {
		m := GLOBL("pairIndex", RODATA|NOPTR)
		for j := 0; j < 16; j++ {
			DATA(4*j, U32(uint32(j)|uint32(16+j)<<16))
		}
		pairIndexMem = &m
	}
	return *pairIndexMem
}

// genPackPairsBF16 emits packPairsBF16AVX512: chunk by chunk of 16 columns
// (its column mask set once), two rows at a time rounded by one
// VCVTNE2PS2BF16 and interleaved by one VPERMW.
func genPackPairsBF16() {
	const name = "packPairsBF16AVX512"
	TEXT(name, NOSPLIT, "func(dst, src []float32, ld, rows, cols, chunks, pstride, tstride int)")
	Doc(packPairsBF16Doc(name)...)
	Pragma("noescape")
	dst, src, ld, chunks, cols, pstride, tstride := RDI, RSI, R8, R9, R10, R12, R13
	c, t, sp, dp, tmp := RBX, RDX, R14, R15, RAX
	idx := Z31
	Load(Param("dst").Base(), dst)
	Load(Param("src").Base(), src)
	Load(Param("ld"), ld)
	SHLQ(U8(2), ld)
	Load(Param("cols"), cols)
	Load(Param("chunks"), chunks)
	Load(Param("pstride"), pstride)
	SHLQ(U8(2), pstride)
	Load(Param("tstride"), tstride)
	SHLQ(U8(2), tstride)
	VMOVDQU32(pairIndex(), idx)
	XORQ(c, c)

	Label(name + "_chunk")
	Comment("Mask of the chunk's columns below cols: min(max(cols-16c, 0), 16) low bits.")
	MOVQ(cols, RCX)
	MOVQ(c, tmp)
	SHLQ(U8(4), tmp)
	SUBQ(tmp, RCX)
	XORQ(tmp, tmp)
	CMPQ(RCX, U8(0))
	CMOVQLT(tmp, RCX)
	MOVQ(U32(16), tmp)
	CMPQ(RCX, U8(16))
	CMOVQGT(tmp, RCX)
	MOVL(U32(1), tmp.As32())
	SHLL(CL, tmp.As32())
	DECL(tmp.As32())
	KMOVW(tmp.As32(), K1)
	Comment("The chunk's columns start at src+64c; its pairs at dst+c/2*pstride+c%2*64.")
	MOVQ(c, sp)
	SHLQ(U8(6), sp)
	ADDQ(src, sp)
	MOVQ(c, dp)
	SHRQ(U8(1), dp)
	IMULQ(pstride, dp)
	ADDQ(dst, dp)
	MOVQ(c, tmp)
	ANDQ(U8(1), tmp)
	SHLQ(U8(6), tmp)
	ADDQ(tmp, dp)
	Load(Param("rows"), t)
	SHRQ(U8(1), t)
	JZ(LabelRef(name + "_odd"))

	Label(name + "_pair")
	VMOVUPS_Z(Mem{Base: sp}, K1, Z0)
	VMOVUPS_Z(Mem{Base: sp, Index: ld, Scale: 1}, K1, Z1)
	opVCVTNE2PS2BF16.emit(Z0, Z1, Z2) // row 2t in the low words, 2t+1 in the high
	VPERMW(Z2, idx, Z2)               // word 2j: row 2t, word 2j+1: row 2t+1
	VMOVDQU32(Z2, Mem{Base: dp})
	LEAQ(Mem{Base: sp, Index: ld, Scale: 2}, sp)
	ADDQ(tstride, dp)
	DECQ(t)
	JNZ(LabelRef(name + "_pair"))

	Label(name + "_odd")
	Load(Param("rows"), tmp)
	TESTQ(U32(1), tmp)
	JZ(LabelRef(name + "_next"))
	Comment("An odd last row is paired with zeros.")
	VMOVUPS_Z(Mem{Base: sp}, K1, Z0)
	VPXORD(Z1, Z1, Z1)
	opVCVTNE2PS2BF16.emit(Z0, Z1, Z2)
	VPERMW(Z2, idx, Z2)
	VMOVDQU32(Z2, Mem{Base: dp})

	Label(name + "_next")
	INCQ(c)
	CMPQ(c, chunks)
	JL(LabelRef(name + "_chunk"))
	VZEROUPPER()
	RET()
}
