// Package vmath generates the amd64 assembly of package vmath: the AVX-512
// and AVX2+FMA kernels of Exp, Gelu, GeluGrad, SoftmaxRows, Arith and the
// LayerNorm rows, with their Go declarations, the plain-Go twin of every
// kernel and the Go declarations of the constants both share.
package vmath

import (
	"fmt"
	"strings"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// kernel describes one kernel of the package in its three variants:
// name+"AVX512" and name+"AVX2" in assembly, and the plain-Go name+"Go".
type kernel struct {
	name   string
	sig    string
	intro  []string // the doc comment before the reference loop; %s is the name
	twin   string   // the reference loop: the body of the Go twin
	outro  []string // the doc comment after the loop
	avx512 func(kernel)
	avx2   func(kernel)
}

// doc is the doc comment of the kernel called fn.
func (k kernel) doc(fn string) []string {
	var d []string
	for i, line := range k.intro {
		if i == 0 {
			line = fn + " " + line
		}
		d = append(d, line)
	}
	d = append(d, "")
	for _, line := range strings.Split(strings.Trim(k.twin, "\n"), "\n") {
		d = append(d, line)
	}
	d = append(d, "")
	return append(d, k.outro...)
}

// Build emits the constant tables and every kernel, AVX-512 first, into the
// assembly file.
func Build() {
	genConstTables()
	for _, k := range kernels {
		k.avx512(k)
	}
	for _, k := range kernels {
		k.avx2(k)
	}
}

var kernels = []kernel{
	{
		name:  "exp",
		sig:   "func(dst, x []float32)",
		intro: []string{"sets dst[i] = e^x[i] for every i < len(x). It is:"},
		twin: `
	for i, v := range x {
		dst[i] = expElem(v)
	}
`,
		outro:  []string{"It needs len(dst) >= len(x); dst may be x itself but not overlap it otherwise."},
		avx512: genExpAVX512,
		avx2:   genExpAVX2,
	},
	{
		name:  "gelu",
		sig:   "func(dst, x []float32)",
		intro: []string{"sets dst[i] = x[i] Phi(x[i]) for every i < len(x). It is:"},
		twin: `
	for i, v := range x {
		dst[i] = geluElem(v)
	}
`,
		outro:  []string{"It needs len(dst) >= len(x); dst may be x itself but not overlap it otherwise."},
		avx512: genGeluAVX512,
		avx2:   genGeluAVX2,
	},
	{
		name: "geluGrad",
		sig:  "func(dst, x, dy []float32)",
		intro: []string{
			"sets dst[i] = dy[i] (Phi(x[i]) + x[i] phi(x[i])), the gradient of",
			"Gelu, for every i < len(x). It is:",
		},
		twin: `
	for i, v := range x {
		dst[i] = geluGradElem(v) * dy[i]
	}
`,
		outro: []string{
			"It needs len(dst) >= len(x) and len(dy) >= len(x); dst may be x or dy",
			"itself but not overlap them otherwise.",
		},
		avx512: genGeluGradAVX512,
		avx2:   genGeluGradAVX2,
	},
	{
		name: "softmaxRow",
		sig:  "func(dst, x []float32)",
		intro: []string{
			"sets dst to the softmax of x: e^(x[i] - m), m the largest x[i],",
			"divided by their sum. The sum is accumulated in float64 in sixteen lanes,",
			"element i in lane i % 16, and the lanes are added pairwise at the end, so",
			"every variant rounds it the same way. It is:",
		},
		twin: `
	m := float32(math.Inf(-1))
	for _, v := range x {
		if v > m {
			m = v
		}
	}
	var lane [16]float64
	for i, v := range x {
		dst[i] = expElem(v - m)
		lane[i%16] += float64(dst[i])
	}
	for w := 8; w > 0; w /= 2 {
		for i := 0; i < w; i++ {
			lane[i] += lane[i+w]
		}
	}
	inv := float32(1 / lane[0])
	for i := range x {
		dst[i] *= inv
	}
`,
		outro: []string{
			"except that a NaN in x may propagate through m instead of through the",
			"sum: either way the row is all NaN. It needs len(dst) >= len(x); dst may",
			"be x itself but not overlap it otherwise.",
		},
		avx512: genSoftmaxRowAVX512,
		avx2:   genSoftmaxRowAVX2,
	},
	{
		name: "softmaxRow2",
		sig:  "func(dst, x []float32, n int)",
		intro: []string{
			"sets dst[:n] to the softmax of x[:n] and dst[n:2*n] to that of",
			"x[n:2*n], two rows a call so that the steps of one overlap those of the",
			"other (a row of attention's 50 tokens is too short for that across",
			"calls). It is:",
		},
		twin: `
	softmaxRowGo(dst[:n], x[:n])
	softmaxRowGo(dst[n:2*n], x[n:2*n])
`,
		outro: []string{
			"It needs n >= 1, len(x) >= 2*n and len(dst) >= 2*n; dst may be x itself",
			"but not overlap it otherwise.",
		},
		avx512: genSoftmaxRow2AVX512,
		avx2:   genSoftmaxRow2AVX2,
	},
}

// binaryOps are the elementwise arithmetic kernels: dst = x op dy.
var binaryOps = []struct {
	name, op, word string
	avx512         func(Op, Op, Op)
	avx2           func(Op, Op, Op)
}{
	{"add", "+", "sum", func(a, b, c Op) { VADDPS(a, b, c) }, func(a, b, c Op) { VADDPS(a, b, c) }},
	{"sub", "-", "difference", func(a, b, c Op) { VSUBPS(a, b, c) }, func(a, b, c Op) { VSUBPS(a, b, c) }},
	{"mul", "*", "product", func(a, b, c Op) { VMULPS(a, b, c) }, func(a, b, c Op) { VMULPS(a, b, c) }},
	{"div", "/", "quotient", func(a, b, c Op) { VDIVPS(a, b, c) }, func(a, b, c Op) { VDIVPS(a, b, c) }},
}

func init() {
	for _, o := range binaryOps {
		o := o
		kernels = append(kernels, kernel{
			name:  o.name,
			sig:   "func(dst, x, dy []float32)",
			intro: []string{fmt.Sprintf("sets dst[i] to the %s x[i] %s dy[i] for every i < len(x). It is:", o.word, o.op)},
			twin: fmt.Sprintf(`
	dy = dy[:len(x)]
	for i, v := range x {
		dst[i] = v %s dy[i]
	}
`, o.op),
			outro: []string{
				"It needs len(dst) >= len(x) and len(dy) >= len(x); dst may be x or dy",
				"itself but not overlap them otherwise.",
			},
			avx512: func(k kernel) {
				name := k.name + "AVX512"
				elementwise512(name, k.sig, k.doc(name), true, 4, nil,
					func(c *consts512, a *zmmAlloc, x, out vecs, dy []Op, _ Op) {
						for i := range x {
							o.avx512(dy[i], x[i], out[i])
						}
					})
			},
			avx2: func(k kernel) {
				name := k.name + "AVX2"
				elementwise256(name, k.sig, k.doc(name), true, func(x, out VecPhysical, dy Op) {
					o.avx2(dy, x, out)
				})
			},
		})
	}
}
