package vmath

import (
	"bytes"
	"fmt"
	"math"
	"strconv"

	"github.com/hyperat/hyperat/_asm/gen"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
)

// constant is one float32 (or bit pattern) that the kernels use, shared by
// the assembly and the plain-Go element functions.
type constant struct {
	name    string
	bits    uint32
	doc     string
	goConst bool // also written to the Go constants file
}

func f32(name string, v float32, doc string) constant {
	return constant{name: name, bits: math.Float32bits(v), doc: doc, goConst: true}
}

// ln2Hi is ln 2 rounded to float32; ln2Lo is the rest, rounded.
var ln2Hi = float32(math.Ln2)

// constants lists every constant in table order.
var constants = []constant{
	{name: "one", bits: math.Float32bits(1)},
	{name: "zero", bits: 0},
	{name: "absMask", bits: 0x7fffffff, doc: "clears the sign bit"},
	{name: "negInf", bits: 0xff800000, doc: "-Inf"},
	{name: "bias", bits: 127, doc: "the float32 exponent bias, an integer"},

	f32("log2e", float32(math.Log2E), "log2 e"),
	f32("ln2Hi", ln2Hi, "ln 2 rounded to float32"),
	f32("ln2Lo", float32(math.Ln2-float64(ln2Hi)), "ln 2 - ln2Hi, rounded"),
	// math.Float32frombits(0xc2aeac4f) = -87.33654: e^x for the next float32
	// below is under 2^-126.
	f32("expMin", math.Float32frombits(0xc2aeac4f), "smallest x with e^x a normal float32; Exp gives 0 below"),
	f32("expMax", 89, "Exp clamps larger x here, where e^x has overflowed to +Inf"),

	// Minimax fit of e^r on [-ln2/2, ln2/2] with the constant term fixed at 1
	// (so that e^0 = 1), rounded to float32; relative error 9.2e-8 before
	// rounding (go run . -fit).
	f32("expC1", 0.999999702, "e^r = 1 + r (c1 + r (c2 + r (c3 + r (c4 + r c5))))"),
	f32("expC2", 0.499991506, ""),
	f32("expC3", 0.166676357, ""),
	f32("expC4", 0.0418979414, ""),
	f32("expC5", 0.00829031225, ""),

	// The same kind of fit for 2^f on |f| <= 1/2 (go run . -fit).
	f32("exp2C1", 0.693147004, "2^f = 1 + f (c1 + f (c2 + f (c3 + f (c4 + f c5))))"),
	f32("exp2C2", 0.240222424, ""),
	f32("exp2C3", 0.0555073358, ""),
	f32("exp2C4", 0.00967151299, ""),
	f32("exp2C5", 0.00132647273, ""),
	f32("negHalfLog2e", -float32(math.Log2E/2), "-log2(e) / 2: e^(-x²/2) = 2^(x² negHalfLog2e)"),

	// Abramowitz & Stegun 7.1.26 in terms of x = sqrt2 z and with the
	// polynomial halved: erfc(z)/2 = t (a1 + t (a2 + t (a3 + t (a4 + t a5)))) e^-z²,
	// t = 1 / (1 + p z) = 1 / (1 + (p/sqrt2) x), for z >= 0; absolute
	// error below 1.5e-7 before rounding.
	f32("asP", float32(0.3275911/math.Sqrt2), "A&S 7.1.26 p / sqrt 2"),
	f32("asA1", 0.254829592/2, "A&S 7.1.26 a1 / 2"),
	f32("asA2", -0.284496736/2, "A&S 7.1.26 a2 / 2"),
	f32("asA3", 1.421413741/2, "A&S 7.1.26 a3 / 2"),
	f32("asA4", -1.453152027/2, "A&S 7.1.26 a4 / 2"),
	f32("asA5", 1.061405429/2, "A&S 7.1.26 a5 / 2"),

	f32("invSqrt2Pi", float32(1/math.Sqrt(2*math.Pi)), "1/sqrt(2 pi)"),
	f32("geluMaxAbs", float32(9*math.Sqrt2), "9 sqrt 2: |x| is clamped here, which keeps e^(-x²/2) a normal float32"),
}

func constIndex(name string) int {
	for i, c := range constants {
		if c.name == name {
			return i
		}
	}
	panic("unknown constant " + name)
}

var scalarTable, vectorTable, iotaTable Mem

// genConstTables emits the constants twice, one float32 each (for
// broadcasts) and eight copies each (for AVX2 memory operands), and the lane
// numbers 0 to 15 as int32, for AVX2 tail masks.
func genConstTables() {
	iota := GLOBL("iota", RODATA|NOPTR)
	for i := 0; i < 16; i++ {
		DATA(4*i, U32(i))
	}
	iotaTable = iota
	scalarTable = GLOBL("consts", RODATA|NOPTR)
	for i, c := range constants {
		DATA(4*i, U32(c.bits))
	}
	vectorTable = GLOBL("consts8", RODATA|NOPTR)
	for i, c := range constants {
		for j := 0; j < 8; j++ {
			DATA(32*i+4*j, U32(c.bits))
		}
	}
}

// scalarConst is the address of one constant in the scalar table.
func scalarConst(name string) Mem { return scalarTable.Offset(4 * constIndex(name)) }

// vectorConst is the address of eight copies of one constant.
func vectorConst(name string) Mem { return vectorTable.Offset(32 * constIndex(name)) }

// WriteConsts writes the Go declarations of the float constants.
func WriteConsts(path string) error {
	var b bytes.Buffer
	b.WriteString(gen.Header())
	b.WriteString("package vmath\n\n")
	b.WriteString("// The constants of the element functions, the same values the assembly reads.\n")
	b.WriteString("const (\n")
	for _, c := range constants {
		if !c.goConst {
			continue
		}
		v := math.Float32frombits(c.bits)
		lit := strconv.FormatFloat(float64(v), 'g', -1, 32)
		if c.doc != "" {
			fmt.Fprintf(&b, "\t%s float32 = %s // %s\n", c.name, lit, c.doc)
		} else {
			fmt.Fprintf(&b, "\t%s float32 = %s\n", c.name, lit)
		}
	}
	b.WriteString(")\n")
	return gen.WriteGo(path, &b)
}
