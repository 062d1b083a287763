package sgemm

import (
	"fmt"
	"math/bits"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

var zmmRegs = []VecPhysical{Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15,
	Z16, Z17, Z18, Z19, Z20, Z21, Z22, Z23, Z24, Z25, Z26, Z27, Z28, Z29, Z30, Z31}

var ymmRegs = []VecPhysical{Y0, Y1, Y2, Y3, Y4, Y5, Y6, Y7, Y8, Y9, Y10, Y11, Y12, Y13, Y14, Y15}

// packSpec describes the packing routines of one variant: B panels of nr
// columns, transposed in blocks of blk×blk.
type packSpec struct {
	isa     isa
	nr, blk int
}

var packSpecs = []packSpec{
	{isa: isaAVX512, nr: 32, blk: 16},
	{isa: isaAVX2, nr: 16, blk: 8},
}

func (s packSpec) suffix() string {
	if s.isa == isaAVX2 {
		return "AVX2"
	}
	return "AVX512"
}

func (s packSpec) regs() []VecPhysical {
	if s.isa == isaAVX2 {
		return ymmRegs
	}
	return zmmRegs
}

func (s packSpec) zero(r VecPhysical) {
	if s.isa == isaAVX2 {
		VXORPS(r, r, r)
	} else {
		VPXORD(r, r, r)
	}
}

// genPackB emits the packing of B panels from a plain B, row by row so that
// B is read in order: each row of B gives nr values to every panel.
func genPackB(s packSpec) {
	name := fmt.Sprintf("packB%d%s", s.nr, s.suffix())
	TEXT(name, NOSPLIT, "func(dst, src []float32, ldb, rows, panels, pstride int)")
	Doc(packBDoc(name, s.nr)...)
	Pragma("noescape")
	dst, src, ld, rows, panels, pstride := RDI, RSI, R8, R9, R10, R11
	sp, dp, q := RAX, RBX, RCX
	Load(Param("dst").Base(), dst)
	Load(Param("src").Base(), src)
	Load(Param("ldb"), ld)
	SHLQ(U8(2), ld)
	Load(Param("rows"), rows)
	Load(Param("panels"), panels)
	Load(Param("pstride"), pstride)
	SHLQ(U8(2), pstride)
	vec := 4 * s.blk // bytes per register
	Label(name + "_row")
	MOVQ(src, sp)
	MOVQ(dst, dp)
	MOVQ(panels, q)
	Label(name + "_panel")
	for v := 0; v < s.nr/s.blk; v++ {
		VMOVUPS(Mem{Base: sp, Disp: vec * v}, s.regs()[v])
	}
	for v := 0; v < s.nr/s.blk; v++ {
		VMOVUPS(s.regs()[v], Mem{Base: dp, Disp: vec * v})
	}
	ADDQ(U8(4*s.nr), sp)
	ADDQ(pstride, dp)
	DECQ(q)
	JNZ(LabelRef(name + "_panel"))
	ADDQ(ld, src)
	ADDQ(U8(4*s.nr), dst)
	DECQ(rows)
	JNZ(LabelRef(name + "_row"))
	VZEROUPPER()
	RET()
}

func packBDoc(name string, nr int) []string {
	return []string{
		fmt.Sprintf("%s packs rows [0, rows) of %d-column panels of a plain B,", name, nr),
		"panel q of dst starting at q*pstride. It is:",
		"",
		"	for p := 0; p < rows; p++ {",
		"		for q := 0; q < panels; q++ {",
		fmt.Sprintf("			d, s := q*pstride+p*%d, p*ldb+q*%d", nr, nr),
		fmt.Sprintf("			copy(dst[d:d+%d], src[s:s+%d])", nr, nr),
		"		}",
		"	}",
		"",
		"rows and panels must be positive.",
	}
}

func packBTransDoc(name string, nr int) []string {
	return []string{
		fmt.Sprintf("%s packs a %d-column panel of op(B) from B stored transposed", name, nr),
		"(column j of op(B) is row j of src), with zeros past its first cols",
		"columns. It is:",
		"",
		"	for p := 0; p < k16; p++ {",
		fmt.Sprintf("		for j := 0; j < %d; j++ {", nr),
		fmt.Sprintf("			dst[p*%d+j] = 0", nr),
		"			if j < cols {",
		fmt.Sprintf("				dst[p*%d+j] = src[j*ldb+p]", nr),
		"			}",
		"		}",
		"	}",
		"",
		fmt.Sprintf("k16 must be a positive multiple of 16 and cols at most %d.", nr),
	}
}

// genPackBTrans emits the packing of a B panel from a transposed B, blk×blk
// blocks at a time transposed in registers. For bfloat16 (isaAVX512BF16)
// each row of a block is 2*blk floats rounded to blk pairs, and the block is
// transposed as 32-bit pairs.
func genPackBTrans(s packSpec) {
	bf16 := s.isa == isaAVX512BF16
	name := fmt.Sprintf("packBTrans%d%s", s.nr, s.suffix())
	kArg, kDoc := "k16", packBTransDoc
	if bf16 {
		name = "packBTransBF16AVX512"
		kArg, kDoc = "k32", packBTransBF16Doc
	}
	TEXT(name, NOSPLIT, fmt.Sprintf("func(dst, src []float32, ldb, %s, cols int)", kArg))
	Doc(kDoc(name, s.nr)...)
	Pragma("noescape")
	floats := s.blk // floats of a row per block
	if bf16 {
		floats = 2 * s.blk
	}

	dst, src, ld, ld3, count, cols := RDI, RSI, R8, R9, RCX, R15
	// Row 4g+r of the panel is read from base[g] plus r rows.
	base := []Register{RAX, RBX, RDX, R10, R11, R12, R13, R14}[:s.nr/4]
	Load(Param("cols"), cols)
	Load(Param("dst").Base(), dst)
	Load(Param("src").Base(), src)
	Load(Param("ldb"), ld)
	SHLQ(U8(2), ld)
	LEAQ(Mem{Base: ld, Index: ld, Scale: 2}, ld3)
	Load(Param(kArg), count)
	SHRQ(U8(bits.TrailingZeros(uint(floats))), count)
	MOVQ(src, base[0])
	for g := 1; g < len(base); g++ {
		LEAQ(Mem{Base: base[g-1], Index: ld, Scale: 4}, base[g]) // 4 rows further
	}
	row := func(j int) Mem {
		b := base[j/4]
		switch j % 4 {
		case 0:
			return Mem{Base: b}
		case 1:
			return Mem{Base: b, Index: ld, Scale: 1}
		case 2:
			return Mem{Base: b, Index: ld, Scale: 2}
		default:
			return Mem{Base: b, Index: ld3, Scale: 1}
		}
	}

	regs := s.regs()
	Label(name + "_loop")
	for h := 0; h < s.nr/s.blk; h++ {
		Commentf("Rows %d to %d: load %d values of each row below cols, zero the", s.blk*h, s.blk*h+s.blk-1, s.blk)
		Comment("others, then transpose.")
		zero := func(i int) string { return fmt.Sprintf("%s_zero%d_%d", name, h, i) }
		for i := 0; i < s.blk; i++ {
			CMPQ(cols, U8(s.blk*h+i))
			JLE(LabelRef(zero(i)))
			if bf16 {
				// 32 floats: the high 16 through the scratch register.
				VMOVUPS(row(s.blk*h+i).Offset(64), regs[s.blk])
				opVCVTNE2PS2BF16.emit(row(s.blk*h+i), regs[s.blk], regs[i])
			} else {
				VMOVUPS(row(s.blk*h+i), regs[i])
			}
		}
		JMP(LabelRef(fmt.Sprintf("%s_loaded%d", name, h)))
		for i := 0; i < s.blk; i++ {
			Label(zero(i))
			s.zero(regs[i])
		}
		Label(fmt.Sprintf("%s_loaded%d", name, h))
		var out []VecPhysical
		if s.isa == isaAVX2 {
			out = transpose8(regs)
		} else {
			out = transpose16(regs)
		}
		for c := 0; c < s.blk; c++ {
			VMOVUPS(out[c], Mem{Base: dst, Disp: 4 * (s.nr*c + s.blk*h)})
		}
	}
	for g := range base {
		ADDQ(U8(4*floats), base[g])
	}
	ADDQ(U32(4*s.nr*s.blk), dst)
	DECQ(count)
	JNZ(LabelRef(name + "_loop"))
	VZEROUPPER()
	RET()
}

// transpose8 transposes the 8×8 matrix whose rows are y[0:8], using y[8:16]
// as scratch, and returns the registers holding its columns.
func transpose8(y []VecPhysical) []VecPhysical {
	r, t := y[:8], y[8:]
	Comment("Interleave pairs of rows: 2×2 blocks.")
	for i := 0; i < 8; i += 2 {
		VUNPCKLPS(r[i+1], r[i], t[i])
		VUNPCKHPS(r[i+1], r[i], t[i+1])
	}
	Comment("Interleave pairs of pairs: 4×4 blocks within each 128-bit lane.")
	u := r
	for g := 0; g < 8; g += 4 {
		VUNPCKLPD(t[g+2], t[g], u[g])
		VUNPCKHPD(t[g+2], t[g], u[g+1])
		VUNPCKLPD(t[g+3], t[g+1], u[g+2])
		VUNPCKHPD(t[g+3], t[g+1], u[g+3])
	}
	Comment("Join the lanes of the two row groups.")
	cols := t
	for x := 0; x < 4; x++ {
		VPERM2F128(U8(0x20), u[4+x], u[x], cols[x])
		VPERM2F128(U8(0x31), u[4+x], u[x], cols[4+x])
	}
	return cols
}

// transpose16 transposes the 16×16 matrix whose rows are z[0:16], using
// z[16:32] as scratch, and returns the registers holding its columns.
func transpose16(z []VecPhysical) []VecPhysical {
	r, t := z[:16], z[16:]
	Comment("Interleave pairs of rows: 2×2 blocks.")
	for i := 0; i < 16; i += 2 {
		VUNPCKLPS(r[i+1], r[i], t[i])
		VUNPCKHPS(r[i+1], r[i], t[i+1])
	}
	Comment("Interleave pairs of pairs: 4×4 blocks within each 128-bit lane.")
	u := r
	for g := 0; g < 16; g += 4 {
		VUNPCKLPD(t[g+2], t[g], u[g])
		VUNPCKHPD(t[g+2], t[g], u[g+1])
		VUNPCKLPD(t[g+3], t[g+1], u[g+2])
		VUNPCKHPD(t[g+3], t[g+1], u[g+3])
	}
	Comment("Gather the 128-bit lanes of the four row groups.")
	v := t
	for x := 0; x < 4; x++ {
		VSHUFF32X4(U8(0x44), u[4+x], u[x], v[4*x])
		VSHUFF32X4(U8(0xEE), u[4+x], u[x], v[4*x+1])
		VSHUFF32X4(U8(0x44), u[12+x], u[8+x], v[4*x+2])
		VSHUFF32X4(U8(0xEE), u[12+x], u[8+x], v[4*x+3])
	}
	cols := r
	for x := 0; x < 4; x++ {
		VSHUFF32X4(U8(0x88), v[4*x+2], v[4*x], cols[x])
		VSHUFF32X4(U8(0xDD), v[4*x+2], v[4*x], cols[4+x])
		VSHUFF32X4(U8(0x88), v[4*x+3], v[4*x+1], cols[8+x])
		VSHUFF32X4(U8(0xDD), v[4*x+3], v[4*x+1], cols[12+x])
	}
	return cols
}
