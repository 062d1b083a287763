package kernels

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/hyperat/hyperat/kernels/cpu"
)

// Precision is how a matrix product computes its products and sums.
type Precision uint8

const (
	// FP32 multiplies and adds in float32, with the fused multiply-add of
	// the CPU: the products of Sgemm.
	FP32 Precision = iota
	// BF16 rounds the elements of A and B to bfloat16 (8 significant bits,
	// to nearest even) and sums their products in float32 with VDPBF16PS,
	// two products per float32 lane and instruction, twice the float32 rate.
	// Where the CPU lacks AVX512_BF16, or HYPERAT_NOAVX512BF16=1 or
	// HYPERAT_NOAVX512=1, BF16 products are FP32's.
	BF16
)

func (p Precision) String() string {
	if p == BF16 {
		return "bf16"
	}
	return "fp32"
}

// MarshalText writes p as String does (JSON writes "fp32" or "bf16").
func (p Precision) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText reads what MarshalText writes.
func (p *Precision) UnmarshalText(b []byte) error {
	q, err := ParsePrecision(string(b))
	if err != nil {
		return err
	}
	*p = q
	return nil
}

// ParsePrecision reads "fp32" or "bf16".
func ParsePrecision(s string) (Precision, error) {
	switch s {
	case "fp32":
		return FP32, nil
	case "bf16":
		return BF16, nil
	}
	return FP32, fmt.Errorf("precision %q: want fp32 or bf16", s)
}

// Native reports whether p's products run on kernels of their own here:
// false for BF16 when it falls back to FP32.
func (p Precision) Native() bool { return p.variant().bf16 != nil || p == FP32 }

// variant is the implementation of p's products.
func (p Precision) variant() *sgemmVariant {
	if p == BF16 {
		return activeBF16
	}
	return activeSgemm
}

// bf16Variant is the variant of the bfloat16 products this build has (nil
// without assembly); activeBF16 is the one BF16 uses, or the float32
// variant when bf16Variant cannot run.
var (
	bf16Variant = archBF16()
	activeBF16  = chooseBF16()
)

func chooseBF16() *sgemmVariant {
	if v := bf16Variant; v != nil && v.supported && !cpu.Off(v.env) && !cpu.Off(cpu.NoAVX512) {
		return v
	}
	return activeSgemm
}

// bf16KC is the largest block along k of the bfloat16 variants, in
// elements: the 14×768 A panel (384 pairs per row, 21 KiB) stays in L1 as
// the 14×384 one of float32 does.
const bf16KC = 768

// bf16Packers round A and B to bfloat16 and pack them as pairs for the
// kernels of a bfloat16 variant: two elements consecutive along k in one
// 32-bit word, the one with the even k in the low half. A panel is then
// kc/2 (rounded up) steps of pairs long; an odd block is completed by a
// zero. The buffers and the kernels keep the type []float32 and hold the
// pairs' bits (see pairsOf).
type bf16Packers struct {
	rows  func(dst, src []float32, ld, rows, n, pitch int)                       // packRowsBF16Go
	pairs func(dst, src []float32, ld, rows, cols, chunks, pstride, tstride int) // packPairsBF16Go
	trans func(dst, src []float32, ldb, k32, cols int)                           // packBTransBF16Go
}

// kSteps is the number of k steps of a kernel on a block of kc elements
// along k: one per element, or per pair.
func (v *sgemmVariant) kSteps(kc int) int {
	if v.bf16 != nil {
		return ceilDiv(kc, 2)
	}
	return kc
}

// panelPairs is panelA for a bfloat16 variant: the A micro-panel for rows
// [ir, ir+rows) and k range [pc, pc+kc), rounded to pairs in buf, kmr rows
// (zeros past rows). From a plain A the rows of pairs are pitch apart; from
// a transposed A each k step holds 16 pairs, one per row (the 14 rows of
// the tallest kernel and zeros).
func (p *gemmPlan) panelPairs(buf []float32, ir, rows, kmr, pc, kc int) (a []float32, rs, ks int) {
	g, pk := &p.g, p.v.bf16
	if g.transA {
		pk.pairs(buf, g.a[pc*g.lda+ir:], g.lda, kc, rows, 1, 0, 16)
		return buf, 1, 16
	}
	steps := ceilDiv(kc, 2)
	pitch := aPitch(steps)
	pk.rows(buf, g.a[ir*g.lda+pc:], g.lda, rows, kc, pitch)
	for i := rows; i < kmr; i++ {
		clear(buf[i*pitch : i*pitch+steps])
	}
	return buf, pitch, 1
}

// packBPairs is packB for a bfloat16 variant: panel q holds, for each pair
// t of the block's rows, the pairs of its nr columns at buf[q*nr*s+t*nr:],
// s = ceil(kc/2). A plain B is split into ranges of pairs of rows, a
// transposed one into ranges of panels, as packB splits them.
func (v *sgemmVariant) packBPairs(buf []float32, g *gemmArgs, pc, kc, jc, nc, part, parts int) {
	nr, pk := v.nr, v.bf16
	steps := ceilDiv(kc, 2)
	panels := ceilDiv(nc, nr)
	if !g.transB {
		t0, t1 := part*steps/parts, (part+1)*steps/parts
		if t0 == t1 {
			return
		}
		rows := min(2*t1, kc) - 2*t0
		pk.pairs(buf[t0*nr:], g.b[(pc+2*t0)*g.ldb+jc:], g.ldb, rows, nc, 2*panels, steps*nr, nr)
		return
	}
	for q := part * panels / parts; q < (part+1)*panels/parts; q++ {
		cols := min(nr, nc-q*nr)
		panel := buf[q*nr*steps : (q+1)*nr*steps]
		j := jc + q*nr
		t0 := 0
		if kc >= 32 {
			k32 := kc &^ 31
			pk.trans(panel, g.b[j*g.ldb+pc:], g.ldb, k32, cols)
			t0 = k32 / 2
		}
		// The last pairs (fewer than 16) one at a time.
		for t := t0; t < steps; t++ {
			out := pairsOf(panel[t*nr : t*nr+nr])
			for jj := range out {
				if jj >= cols {
					out[jj] = 0
					continue
				}
				row := g.b[(j+jj)*g.ldb+pc:]
				hi := float32(0)
				if 2*t+1 < kc {
					hi = row[2*t+1]
				}
				out[jj] = pairBF16(row[2*t], hi)
			}
		}
	}
}

// pairsOf views the bits of s as bfloat16 pairs.
func pairsOf(s []float32) []uint32 {
	return unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(s))), len(s))
}

// pairBF16 is the pair of lo and hi rounded to bfloat16, lo in the low half.
func pairBF16(lo, hi float32) uint32 {
	return uint32(toBF16(lo)) | uint32(toBF16(hi))<<16
}

// toBF16 rounds x to bfloat16 as VCVTNE2PS2BF16 does (Intel SDM,
// convert_fp32_to_bfloat16): to nearest even (an overflow to infinity), a
// denormal to the zero of its sign, a NaN truncated with its quiet bit set.
// The tests compare it with the instruction on every float32.
func toBF16(x float32) uint16 {
	u := math.Float32bits(x)
	switch u >> 23 & 0xff {
	case 0:
		return uint16(u>>16) & 0x8000
	case 0xff:
		if u&0x7fffff != 0 {
			return uint16(u>>16) | 0x40
		}
		return uint16(u >> 16)
	}
	return uint16((u + 0x7fff + u>>16&1) >> 16)
}

// dotBF16 is one float32 lane of VDPBF16PS: acc plus the products of the
// bfloat16 pairs x and y, the high halves' first (Intel SDM, VDPBF16PS),
// x being the instruction's first source and y its second (the kernels
// broadcast y from A).
func dotBF16(acc float32, x, y uint32) float32 {
	acc = fmaBF16(acc, uint16(x>>16), uint16(y>>16))
	return fmaBF16(acc, uint16(x), uint16(y))
}

// fmaBF16 is one step of VDPBF16PS, acc + x*y for bfloat16 x and y, as the
// instruction computes it whatever MXCSR says: exactly, rounded once to
// nearest even, with denormal operands (acc too) read as zeros and results
// below the smallest normal flushed to zeros of their sign. A NaN result is
// the first NaN among x, y and acc, quieted, or the default NaN for an
// invalid operation (inf*0, inf-inf). The tests check it against the
// instruction on special and random operands.
func fmaBF16(acc float32, x, y uint16) float32 {
	const quiet, defaultNaN = 0x00400000, 0xffc00000
	ux, uy, ua := uint32(x)<<16, uint32(y)<<16, math.Float32bits(acc)
	for _, u := range [...]uint32{ux, uy, ua} {
		if u&0x7f800000 == 0x7f800000 && u&0x7fffff != 0 {
			return math.Float32frombits(u | quiet)
		}
	}
	// The product of two 8-bit significands is exact in float64, and
	// rounding the float64 sum to float32 gives the sum rounded once, as
	// float64 carries more than twice float32's 24 bits.
	s := daz(ua) + daz(ux)*daz(uy)
	switch {
	case s != s:
		return math.Float32frombits(defaultNaN)
	case s == 0 || math.Abs(s) >= 0x1p-126:
		return float32(s)
	}
	// Below the smallest normal: rounded to 24 bits (scaled into the normal
	// range), it is either below it too and flushed, or the smallest normal.
	if math.Abs(float64(float32(s*0x1p200))) < 0x1p74 {
		return float32(math.Copysign(0, s))
	}
	return float32(math.Copysign(0x1p-126, s))
}

// daz is the float32 with bits u, a denormal read as the zero of its sign.
func daz(u uint32) float64 {
	if u&0x7f800000 == 0 {
		u &= 0x80000000
	}
	return float64(math.Float32frombits(u))
}

// sbgemmTileGo is the body of the plain-Go twins of the bfloat16 kernels
// for an mr×nr tile, accumulating in acc (mr*nr zeros): the same operations
// as the assembly, in the same order, so the same bits.
func sbgemmTileGo(acc []float32, mr, nr, k int, a []float32, rs, ks int, b, c []float32, ldc int, alpha, beta float32, bias []float32, rows, cols int) {
	ap, bp := pairsOf(a), pairsOf(b)
	for t := 0; t < k; t++ {
		bt := bp[t*nr : t*nr+cols]
		for i := 0; i < rows; i++ {
			y := ap[i*rs+t*ks]
			row := acc[i*nr : i*nr+cols]
			for j, x := range bt {
				row[j] = dotBF16(row[j], x, y)
			}
		}
	}
	for i := 0; i < rows; i++ {
		row := acc[i*nr : i*nr+cols]
		out := c[i*ldc : i*ldc+cols]
		switch {
		case bias != nil:
			for j, s := range row {
				out[j] = float32(alpha*s) + bias[j]
			}
		case beta == 0:
			for j, s := range row {
				out[j] = alpha * s
			}
		default:
			for j, s := range row {
				out[j] = float32(alpha*s) + float32(beta*out[j])
			}
		}
	}
}
