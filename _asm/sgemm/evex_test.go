package sgemm

import (
	"bytes"
	"testing"

	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// TestEncode compares the encoder with GNU as 2.40 (the bytes below are
// what it assembles from the AT&T form in each comment).
func TestEncode(t *testing.T) {
	for _, tc := range []struct {
		op        evexOp
		src2      Op
		src1, dst VecPhysical
		bcst      bool
		want      []byte
	}{
		// vdpbf16ps (%rsi){1to16}, %zmm28, %zmm0
		{opVDPBF16PS, Mem{Base: RSI}, Z28, Z0, true, []byte{0x62, 0xf2, 0x1e, 0x50, 0x52, 0x06}},
		// vdpbf16ps (%rsi,%r9,1){1to16}, %zmm29, %zmm13
		{opVDPBF16PS, Mem{Base: RSI, Index: R9, Scale: 1}, Z29, Z13, true, []byte{0x62, 0x32, 0x16, 0x50, 0x52, 0x2c, 0x0e}},
		// vdpbf16ps (%rdi,%r9,2){1to16}, %zmm28, %zmm27
		{opVDPBF16PS, Mem{Base: RDI, Index: R9, Scale: 2}, Z28, Z27, true, []byte{0x62, 0x22, 0x1e, 0x50, 0x52, 0x1c, 0x4f}},
		// vdpbf16ps (%r8,%r10,1){1to16}, %zmm29, %zmm16
		{opVDPBF16PS, Mem{Base: R8, Index: R10, Scale: 1}, Z29, Z16, true, []byte{0x62, 0x82, 0x16, 0x50, 0x52, 0x04, 0x10}},
		// vdpbf16ps (%rdi,%r9,4){1to16}, %zmm3, %zmm31
		{opVDPBF16PS, Mem{Base: RDI, Index: R9, Scale: 4}, Z3, Z31, true, []byte{0x62, 0x22, 0x66, 0x58, 0x52, 0x3c, 0x8f}},
		// vdpbf16ps 0x40(%rsi){1to16}, %zmm28, %zmm0
		{opVDPBF16PS, Mem{Base: RSI, Disp: 0x40}, Z28, Z0, true, []byte{0x62, 0xf2, 0x1e, 0x50, 0x52, 0x46, 0x10}},
		// vdpbf16ps 0x404(%rax){1to16}, %zmm28, %zmm0
		{opVDPBF16PS, Mem{Base: RAX, Disp: 0x404}, Z28, Z0, true, []byte{0x62, 0xf2, 0x1e, 0x50, 0x52, 0x80, 0x04, 0x04, 0x00, 0x00}},
		// vdpbf16ps %zmm1, %zmm2, %zmm3
		{opVDPBF16PS, Z1, Z2, Z3, false, []byte{0x62, 0xf2, 0x6e, 0x48, 0x52, 0xd9}},
		// vcvtne2ps2bf16 %zmm1, %zmm2, %zmm3
		{opVCVTNE2PS2BF16, Z1, Z2, Z3, false, []byte{0x62, 0xf2, 0x6f, 0x48, 0x72, 0xd9}},
		// vcvtne2ps2bf16 %zmm17, %zmm25, %zmm8
		{opVCVTNE2PS2BF16, Z17, Z25, Z8, false, []byte{0x62, 0x32, 0x37, 0x40, 0x72, 0xc1}},
		// vcvtne2ps2bf16 0x40(%rax), %zmm2, %zmm3
		{opVCVTNE2PS2BF16, Mem{Base: RAX, Disp: 0x40}, Z2, Z3, false, []byte{0x62, 0xf2, 0x6f, 0x48, 0x72, 0x58, 0x01}},
		// vcvtne2ps2bf16 (%rax,%r8,4), %zmm12, %zmm20
		{opVCVTNE2PS2BF16, Mem{Base: RAX, Index: R8, Scale: 4}, Z12, Z20, false, []byte{0x62, 0xa2, 0x1f, 0x48, 0x72, 0x24, 0x80}},
		// vcvtne2ps2bf16 0x80(%r12), %zmm2, %zmm3
		{opVCVTNE2PS2BF16, Mem{Base: R12, Disp: 0x80}, Z2, Z3, false, []byte{0x62, 0xd2, 0x6f, 0x48, 0x72, 0x5c, 0x24, 0x02}},
		// vcvtne2ps2bf16 0x0(%r13), %zmm2, %zmm3
		{opVCVTNE2PS2BF16, Mem{Base: R13}, Z2, Z3, false, []byte{0x62, 0xd2, 0x6f, 0x48, 0x72, 0x5d, 0x00}},
		// vcvtne2ps2bf16 -0x2000(%rbx,%r11,8), %zmm2, %zmm3
		{opVCVTNE2PS2BF16, Mem{Base: RBX, Index: R11, Scale: 8, Disp: -0x2000}, Z2, Z3, false, []byte{0x62, 0xb2, 0x6f, 0x48, 0x72, 0x5c, 0xdb, 0x80}},
		// vcvtne2ps2bf16 -0x2040(%rbx), %zmm2, %zmm3
		{opVCVTNE2PS2BF16, Mem{Base: RBX, Disp: -0x2040}, Z2, Z3, false, []byte{0x62, 0xf2, 0x6f, 0x48, 0x72, 0x9b, 0xc0, 0xdf, 0xff, 0xff}},
	} {
		got := tc.op.encode(tc.src2, tc.src1, tc.dst, tc.bcst)
		if !bytes.Equal(got, tc.want) {
			t.Errorf("%s %s, %s, %s (bcst %v): % x, want % x", tc.op.name, tc.src2.Asm(), tc.src1.Asm(), tc.dst.Asm(), tc.bcst, got, tc.want)
		}
	}
}

func TestRawLine(t *testing.T) {
	got := rawLine([]byte{0x62, 0x32, 0x16, 0x50, 0x52, 0x2c, 0x0e})
	if want := "LONG $0x50163262; WORD $0x2c52; BYTE $0x0e"; got != want {
		t.Errorf("rawLine = %q, want %q", got, want)
	}
}
