package sgemm

import (
	"fmt"
	"strings"

	. "github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/ir"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// Go's assembler has no mnemonic for the AVX512_BF16 instructions, so the
// generator encodes them itself (Intel SDM vol. 2, 2.7 "Intel AVX-512
// encoding") and emits their bytes, each instruction on one line with its
// Go-syntax form as a comment.

// evexOp is a 512-bit AVX-512 instruction of the form OP src2, src1, dst
// (Go operand order): dst a vector register in ModRM.reg, src1 a vector
// register in EVEX.vvvv, src2 a vector register or a memory operand in
// ModRM.rm.
type evexOp struct {
	name   string
	pp     byte // implied prefix: 1 = 66, 2 = F3, 3 = F2
	mmm    byte // opcode map: 2 = 0F38
	opcode byte
	isa    string
}

var (
	// VDPBF16PS src2, src1, dst: for each float32 lane i,
	// dst[i] += src1.bf16[2i+1]*src2.bf16[2i+1], then
	// dst[i] += src1.bf16[2i]*src2.bf16[2i] (EVEX.512.F3.0F38.W0 52 /r).
	opVDPBF16PS = evexOp{name: "VDPBF16PS", pp: 2, mmm: 2, opcode: 0x52, isa: "AVX512_BF16"}
	// VCVTNE2PS2BF16 src2, src1, dst: the 32 bfloat16 of dst are src2's 16
	// floats rounded (low half), then src1's (EVEX.512.F2.0F38.W0 72 /r).
	opVCVTNE2PS2BF16 = evexOp{name: "VCVTNE2PS2BF16", pp: 3, mmm: 2, opcode: 0x72, isa: "AVX512_BF16"}
)

// encode returns the bytes of op with the given operands; bcst broadcasts
// one 32-bit element of the memory operand src2 to every lane ({1to16}).
func (op evexOp) encode(src2 Op, src1, dst reg.VecPhysical, bcst bool) []byte {
	d, s1 := byte(dst.PhysicalIndex()), byte(src1.PhysicalIndex())
	// EVEX.R, X, B, R' and V' are stored inverted.
	inv := func(b byte) byte { return b ^ 1 }
	var xBit, bBit byte
	var modrm []byte
	switch s2 := src2.(type) {
	case reg.VecPhysical:
		r := byte(s2.PhysicalIndex())
		if bcst {
			panic(op.name + ": broadcast needs a memory operand")
		}
		// For a register in ModRM.rm, EVEX.X extends it to 32 registers.
		bBit, xBit = r>>3&1, r>>4&1
		modrm = []byte{0xC0 | (d&7)<<3 | r&7}
	case Mem:
		n := 64 // disp8 is scaled by the size of the memory operand
		if bcst {
			n = 4
		}
		var bits []byte
		bits, xBit, bBit = memOperand(s2, d&7, n)
		modrm = bits
	default:
		panic(fmt.Sprintf("%s: operand %s is neither a vector register nor memory", op.name, src2.Asm()))
	}
	p0 := inv(d>>3&1)<<7 | inv(xBit)<<6 | inv(bBit)<<5 | inv(d>>4&1)<<4 | op.mmm
	p1 := (^s1&15)<<3 | 1<<2 | op.pp // W0
	p2 := 2<<5 | inv(s1>>4&1)<<3     // z0, L'L = 512 bits, no opmask
	if bcst {
		p2 |= 1 << 4
	}
	return append([]byte{0x62, p0, p1, p2, op.opcode}, modrm...)
}

// memOperand encodes the memory operand m with reg in ModRM.reg: ModRM, SIB
// and displacement, and the high bits of the index and base (EVEX.X, B).
// A displacement that is a multiple of n within 127*n takes one byte.
func memOperand(m Mem, regField byte, n int) (bytes []byte, xBit, bBit byte) {
	if m.Symbol.Name != "" || m.Base == nil {
		panic("evex: memory operands need a base register and no symbol")
	}
	base := byte(m.Base.(reg.Physical).PhysicalIndex())
	bBit = base >> 3 & 1
	var mod byte
	var disp []byte
	switch {
	case m.Disp == 0 && base&7 != 5: // [rbp] and [r13] have no form without a displacement
	case m.Disp%n == 0 && m.Disp/n >= -128 && m.Disp/n <= 127:
		mod, disp = 1, []byte{byte(int8(m.Disp / n))}
	default:
		mod = 2
		d := uint32(int32(m.Disp))
		disp = []byte{byte(d), byte(d >> 8), byte(d >> 16), byte(d >> 24)}
	}
	if m.Index == nil && base&7 != 4 { // [rsp] and [r12] need a SIB byte
		return append([]byte{mod<<6 | regField<<3 | base&7}, disp...), 0, bBit
	}
	index := byte(4) // no index
	if m.Index != nil {
		index = byte(m.Index.(reg.Physical).PhysicalIndex())
		if index == 4 {
			panic("evex: SP cannot be an index")
		}
	}
	scale := map[uint8]byte{0: 0, 1: 0, 2: 1, 4: 2, 8: 3}[m.Scale]
	sib := scale<<6 | (index&7)<<3 | base&7
	return append([]byte{mod<<6 | regField<<3 | 4, sib}, disp...), index >> 3 & 1, bBit
}

// emit adds op to the function being generated.
func (op evexOp) emit(src2 Op, src1, dst reg.VecPhysical) {
	line := rawLine(op.encode(src2, src1, dst, false)) +
		fmt.Sprintf(" // %s %s, %s, %s", op.name, src2.Asm(), src1.Asm(), dst.Asm())
	// The whole line is the opcode: avo then prints it as it is and its
	// passes see an instruction without operands.
	Instruction(&ir.Instruction{Opcode: line, ISA: []string{"AVX512F", op.isa}})
}

// rawLine writes bytes as the data directives LONG, WORD and BYTE, joined
// by semicolons (little-endian, as the assembler stores them).
func rawLine(b []byte) string {
	var parts []string
	for len(b) > 0 {
		switch {
		case len(b) >= 4:
			parts = append(parts, fmt.Sprintf("LONG $0x%02x%02x%02x%02x", b[3], b[2], b[1], b[0]))
			b = b[4:]
		case len(b) >= 2:
			parts = append(parts, fmt.Sprintf("WORD $0x%02x%02x", b[1], b[0]))
			b = b[2:]
		default:
			parts = append(parts, fmt.Sprintf("BYTE $0x%02x", b[0]))
			b = b[1:]
		}
	}
	return strings.Join(parts, "; ")
}
