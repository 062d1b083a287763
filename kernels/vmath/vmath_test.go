package vmath

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math"
	"math/big"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

// supported lists the variants this machine can run, the plain-Go one last.
func supported() []*variant {
	var vs []*variant
	for _, v := range variants {
		if v.supported {
			vs = append(vs, v)
		}
	}
	return vs
}

// specials are inputs at the edges of the element functions.
var specials = []float32{
	0, float32(math.Copysign(0, -1)), 1, -1, 0.5, -0.5,
	float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()),
	math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, -math.SmallestNonzeroFloat32,
	0x1p-126, -0x1p-126, 1e-30, -1e-30, 1e30, -1e30,
	expMin, math.Nextafter32(expMin, -100), math.Nextafter32(expMin, 0), -87.5, -88, -100, -104, -200,
	88.72283, 88.72284, 88.7229, 89, 89.5, 100,
	geluMaxAbs, -geluMaxAbs, 12.7, -12.7, 13, -13, 9, -9, 5, -5,
}

// inputs returns n inputs: mostly uniform in [-scale, scale], some specials.
func inputs(rng *rand.Rand, n int, scale float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		if rng.IntN(8) == 0 {
			x[i] = specials[rng.IntN(len(specials))]
		} else {
			x[i] = float32(scale * (2*rng.Float64() - 1))
		}
	}
	return x
}

// same reports whether a and b are the same float32, every NaN equal.
func same(a, b float32) bool {
	if a != a || b != b {
		return a != a && b != b
	}
	return math.Float32bits(a) == math.Float32bits(b)
}

const guard = 8

var guardValue = float32(-12345.678)

// guarded returns a buffer of n floats starting off elements into a longer
// slice that has guard values around it.
func guarded(n, off int) (buf, dst []float32) {
	buf = make([]float32, off+n+2*guard)
	for i := range buf {
		buf[i] = guardValue
	}
	return buf, buf[off+guard : off+guard+n]
}

func checkGuards(t *testing.T, what string, buf []float32, off, n int) {
	t.Helper()
	for i, v := range buf {
		if (i < off+guard || i >= off+guard+n) && v != guardValue {
			t.Fatalf("%s: element %d outside the output was written", what, i-off-guard)
		}
	}
}

// copyAt copies x into a fresh buffer at an offset of off elements.
func copyAt(x []float32, off int) []float32 {
	b := make([]float32, off+len(x))
	copy(b[off:], x)
	return b[off:]
}

// TestVariants runs every variant on all lengths to 300 and several
// alignments and checks it against the plain-Go twin bit for bit.
func TestVariants(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, v := range supported() {
		t.Run(v.name, func(t *testing.T) {
			for n := 0; n <= 300; n++ {
				for off := 0; off < 4; off++ {
					x := copyAt(inputs(rng, n, 30), off)
					dy := copyAt(inputs(rng, n, 3), (off+1)%4)
					want := make([]float32, n)
					unary := []struct {
						name   string
						kernel func(dst, x []float32)
						twin   func(dst, x []float32)
					}{
						{"exp", v.exp, expGo},
						{"gelu", v.gelu, geluGo},
						{"softmaxRow", v.softmaxRow, softmaxRowGo},
					}
					for _, k := range unary {
						if k.name == "softmaxRow" {
							x = copyAt(softmaxInputs(rng, n), off)
						}
						k.twin(want, x)
						buf, dst := guarded(n, off)
						k.kernel(dst, x)
						checkGuards(t, k.name, buf, off, n)
						compare(t, fmt.Sprintf("%s n=%d off=%d", k.name, n, off), x, dst, want)
					}
					geluGradGo(want, x, dy)
					buf, dst := guarded(n, off)
					v.geluGrad(dst, x, dy)
					checkGuards(t, "geluGrad", buf, off, n)
					compare(t, fmt.Sprintf("geluGrad n=%d off=%d", n, off), x, dst, want)
					for op, twin := range goVariant.arith {
						twin(want, x, dy)
						buf, dst := guarded(n, off)
						v.arith[op](dst, x, dy)
						checkGuards(t, "arith", buf, off, n)
						compare(t, fmt.Sprintf("arith %d n=%d off=%d", op, n, off), x, dst, want)
					}
				}
			}
		})
	}
}

// TestSoftmaxRow2 checks every variant's two-row softmax against the
// plain-Go twin on each row, bit for bit: all lengths to 300 with NaN,
// infinite and masked logits (softmaxInputs), both rows in place too.
func TestSoftmaxRow2(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, v := range supported() {
		for n := 1; n <= 300; n++ {
			x := append(softmaxInputs(rng, n), softmaxInputs(rng, n)...)
			want := make([]float32, 2*n)
			softmaxRowGo(want[:n], x[:n])
			softmaxRowGo(want[n:], x[n:])
			buf, dst := guarded(2*n, n%4)
			v.softmaxRow2(dst, x, n)
			checkGuards(t, "softmaxRow2", buf, n%4, 2*n)
			compare(t, fmt.Sprintf("%s softmaxRow2 n=%d", v.name, n), x, dst, want)
			got := append([]float32(nil), x...)
			v.softmaxRow2(got, got, n)
			compare(t, fmt.Sprintf("%s softmaxRow2 in place n=%d", v.name, n), x, got, want)
		}
	}
}

func compare(t *testing.T, what string, x, got, want []float32) {
	t.Helper()
	for i := range want {
		if !same(got[i], want[i]) {
			t.Fatalf("%s: element %d (x = %g): got %g (%#x), want %g (%#x)", what, i, x[i],
				got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
		}
	}
}

// softmaxInputs returns a row of logits, some of them -Inf as a mask sets
// them, now and then a large offset, +Inf or NaN.
func softmaxInputs(rng *rand.Rand, n int) []float32 {
	x := make([]float32, n)
	shift := 0.0
	if rng.IntN(4) == 0 {
		shift = 1000 * (2*rng.Float64() - 1)
	}
	for i := range x {
		switch rng.IntN(64) {
		case 0:
			x[i] = float32(math.Inf(-1))
		case 1:
			x[i] = float32(shift - 150)
		default:
			x[i] = float32(shift + 20*(2*rng.Float64()-1))
		}
	}
	if n > 0 && rng.IntN(50) == 0 {
		x[rng.IntN(n)] = []float32{float32(math.Inf(1)), float32(math.NaN())}[rng.IntN(2)]
	}
	return x
}

// TestInPlace runs every kernel with dst the same slice as an input.
func TestInPlace(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, v := range supported() {
		for _, n := range []int{1, 15, 16, 17, 100, 257} {
			x, dy := inputs(rng, n, 20), inputs(rng, n, 2)
			want := make([]float32, n)
			for _, k := range []struct {
				kernel, twin func(dst, x []float32)
			}{{v.exp, expGo}, {v.gelu, geluGo}, {v.softmaxRow, softmaxRowGo}} {
				k.twin(want, x)
				got := append([]float32(nil), x...)
				k.kernel(got, got)
				compare(t, v.name+" in place", x, got, want)
			}
			geluGradGo(want, x, dy)
			got := append([]float32(nil), x...)
			v.geluGrad(got, got, dy)
			compare(t, v.name+" geluGrad in place of x", x, got, want)
			got = append([]float32(nil), dy...)
			v.geluGrad(got, x, got)
			compare(t, v.name+" geluGrad in place of dy", x, got, want)
		}
	}
}

func geluRef(x float64) float64 { return 0.5 * x * (1 + math.Erf(x/math.Sqrt2)) }

func geluGradRef(x float64) float64 {
	return 0.5*(1+math.Erf(x/math.Sqrt2)) + x*math.Exp(-0.5*x*x)/math.Sqrt(2*math.Pi)
}

// sweep calls f on n+1 evenly spaced points of [lo, hi] and on every special.
func sweep(lo, hi float64, n int, f func(x float32)) {
	for i := 0; i <= n; i++ {
		f(float32(lo + (hi-lo)*float64(i)/float64(n)))
	}
}

// The accuracy bounds are those of the scalar functions the kernels replace.
const (
	expTol      = 4e-7 // relative
	erfTol      = 6e-7 // absolute
	geluTol     = 6e-7 // times max(1, |x|)
	geluGradTol = 1e-6 // times max(1, |x|)
)

func TestExpAccuracy(t *testing.T) {
	worst := 0.0
	sweep(float64(expMin), 88.72, 400000, func(x float32) {
		want := math.Exp(float64(x))
		got := float64(expElem(x))
		e := math.Abs(got-want) / want
		worst = math.Max(worst, e)
		if e > expTol {
			t.Fatalf("exp(%g) = %g, want %g", x, got, want)
		}
		if got < 0x1p-126 {
			t.Fatalf("exp(%g) = %g is not a normal float32", x, got)
		}
	})
	t.Logf("largest relative error %.3g", worst)
	for x, want := range map[float32]float32{0: 1, 100: float32(math.Inf(1)), 88.72284: float32(math.Inf(1)),
		-100: 0, math.Nextafter32(expMin, -100): 0, float32(math.Inf(-1)): 0, float32(math.Inf(1)): float32(math.Inf(1))} {
		if got := expElem(x); got != want {
			t.Errorf("exp(%g) = %g, want %g", x, got, want)
		}
	}
	if got := expElem(88.72283); math.IsInf(float64(got), 0) || got < 3.4e38 {
		t.Errorf("exp(88.72283) = %g, want about 3.40279e38", got)
	}
	if nan := float32(math.NaN()); expElem(nan) == expElem(nan) {
		t.Error("exp(NaN) is not NaN")
	}
}

func TestErfAccuracy(t *testing.T) {
	worst := 0.0
	// erf(z) = 1 - erfc(z), z = x/sqrt2
	sweep(0, 17, 400000, func(x float32) {
		r, p, n := erfcParts(min(x, geluMaxAbs))
		h := scalef(r*p, n)
		e := math.Abs(1 - 2*float64(h) - math.Erf(float64(x)/math.Sqrt2)) // float64 arithmetic: exact
		worst = math.Max(worst, e)
		if e > erfTol {
			t.Fatalf("erf(%g / sqrt2) off by %g", x, e)
		}
	})
	t.Logf("largest absolute error %.3g", worst)
}

func TestGeluAccuracy(t *testing.T) {
	worstF, worstG := 0.0, 0.0
	sweep(-20, 20, 400000, func(x float32) {
		xd := float64(x)
		e := math.Abs(float64(geluElem(x))-geluRef(xd)) / math.Max(1, math.Abs(xd))
		worstF = math.Max(worstF, e)
		if e > geluTol {
			t.Fatalf("gelu(%g) off by %g", x, e)
		}
		e = math.Abs(float64(geluGradElem(x))-geluGradRef(xd)) / math.Max(1, math.Abs(xd))
		worstG = math.Max(worstG, e)
		if e > geluGradTol {
			t.Fatalf("geluGrad(%g) off by %g", x, e)
		}
	})
	t.Logf("largest error / max(1, |x|): gelu %.3g, gradient %.3g", worstF, worstG)
	for _, c := range []struct{ x, gelu, grad float32 }{
		{0, 0, 0.5}, {float32(math.Inf(1)), float32(math.Inf(1)), 1}, {1e30, 1e30, 1}, {100, 100, 1},
	} {
		if g := geluElem(c.x); g != c.gelu {
			t.Errorf("gelu(%g) = %g, want %g", c.x, g, c.gelu)
		}
		if g := geluGradElem(c.x); g != c.grad {
			t.Errorf("geluGrad(%g) = %g, want %g", c.x, g, c.grad)
		}
	}
	for _, x := range []float32{-100, -1e30, float32(math.Inf(-1))} {
		if g, d := geluElem(x), geluGradElem(x); g > 0 || g < -1e-35 || d > 0 || d < -1e-34 {
			t.Errorf("gelu(%g) = %g, gradient %g, want about 0", x, g, d)
		}
	}
	if nan := float32(math.NaN()); geluElem(nan) == geluElem(nan) || geluGradElem(nan) == geluGradElem(nan) {
		t.Error("gelu(NaN) is not NaN")
	}
}

// TestKernelAccuracy checks the kernel in use against float64 math on random
// inputs, so that the assembly is checked directly and not only through the twin.
func TestKernelAccuracy(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const n = 1 << 20
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(40 * (2*rng.Float64() - 1))
	}
	ones := make([]float32, n)
	for i := range ones {
		ones[i] = 1
	}
	y := make([]float32, n)
	for _, v := range supported() {
		v.exp(y, x)
		for i, xi := range x {
			if want := math.Exp(float64(xi)); math.Abs(float64(y[i])-want) > expTol*want {
				t.Fatalf("%s: exp(%g) = %g, want %g", v.name, xi, y[i], want)
			}
		}
		v.gelu(y, x)
		for i, xi := range x {
			xd := float64(xi)
			if e := math.Abs(float64(y[i]) - geluRef(xd)); e > geluTol*math.Max(1, math.Abs(xd)) {
				t.Fatalf("%s: gelu(%g) off by %g", v.name, xi, e)
			}
		}
		v.geluGrad(y, x, ones)
		for i, xi := range x {
			xd := float64(xi)
			if e := math.Abs(float64(y[i]) - geluGradRef(xd)); e > geluGradTol*math.Max(1, math.Abs(xd)) {
				t.Fatalf("%s: geluGrad(%g) off by %g", v.name, xi, e)
			}
		}
	}
}

func TestSoftmaxRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, c := range []struct{ rows, n int }{{1, 1}, {3, 5}, {197, 197}, {2, 1000}, {1, 4099}} {
		x := make([]float32, c.rows*c.n)
		for i := range x {
			x[i] = float32(25 * (2*rng.Float64() - 1))
		}
		got := make([]float32, len(x))
		SoftmaxRows(got, x, c.rows, c.n)
		for r := 0; r < c.rows; r++ {
			row, out := x[r*c.n:(r+1)*c.n], got[r*c.n:(r+1)*c.n]
			m := math.Inf(-1)
			for _, v := range row {
				m = math.Max(m, float64(v))
			}
			sum := 0.0
			for _, v := range row {
				sum += math.Exp(float64(v) - m)
			}
			total := 0.0
			for i, v := range row {
				want := math.Exp(float64(v)-m) / sum
				// x - m is rounded to float32 first: an error of up to
				// |x - m| 2^-24 in the exponent.
				tol := (1e-6 + 0x1p-24*(m-float64(v))) * want
				if e := math.Abs(float64(out[i]) - want); e > tol {
					t.Fatalf("%dx%d row %d element %d: got %g, want %g", c.rows, c.n, r, i, out[i], want)
				}
				total += float64(out[i])
			}
			if math.Abs(total-1) > 1e-6 {
				t.Errorf("%dx%d row %d sums to %g", c.rows, c.n, r, total)
			}
		}
	}
	// A row's result does not depend on the other rows.
	x := make([]float32, 5*37)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	all := make([]float32, len(x))
	SoftmaxRows(all, x, 5, 37)
	one := make([]float32, 37)
	SoftmaxRows(one, x[2*37:3*37], 1, 37)
	compare(t, "row alone", x[2*37:3*37], one, all[2*37:3*37])
	SoftmaxRows(nil, nil, 0, 5)
	SoftmaxRows(nil, nil, 5, 0)

	// Masked logits count as 0; +Inf, NaN or a fully masked row give NaN.
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	rows := [][]float32{
		{-inf, 0, -inf, 0},
		{1, inf, 2, 3},
		{1, nan, 2, 3},
		{-inf, -inf, -inf, -inf},
	}
	for _, v := range supported() {
		for i, row := range rows {
			out := make([]float32, len(row))
			v.softmaxRow(out, row)
			for j, o := range out {
				want := float32(0.5)
				switch {
				case i > 0:
					want = nan
				case row[j] < 0:
					want = 0
				}
				if !same(o, want) {
					t.Errorf("%s: softmax of %v = %v", v.name, row, out)
					break
				}
			}
		}
	}
}

func TestPanics(t *testing.T) {
	x := make([]float32, 6)
	for name, f := range map[string]func(){
		"Exp":                  func() { Exp(x[:5], x) },
		"Gelu":                 func() { Gelu(x, x[:5]) },
		"GeluGrad":             func() { GeluGrad(x, x, x[:5]) },
		"SoftmaxRows":          func() { SoftmaxRows(x, x, 2, 2) },
		"SoftmaxRows rows < 0": func() { SoftmaxRows(x, x, -2, -3) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s did not panic", name)
				}
			}()
			f()
		}()
	}
}

// TestFMA32 checks the emulated fused multiply-add against exact arithmetic,
// with operands chosen so that a*b + c often falls near a float32 midpoint.
func TestFMA32(t *testing.T) {
	exact := func(a, b, c float32) float32 {
		p := new(big.Float).SetPrec(1000).SetFloat64(float64(a))
		p.Mul(p, new(big.Float).SetFloat64(float64(b)))
		p.Add(p, new(big.Float).SetFloat64(float64(c)))
		f, _ := p.Float32()
		return f
	}
	// (24929 / 2^14) (673 / 2^10) = 1 + 2^-24, a midpoint; with c = 2^-70 the
	// float64 sum stays on the midpoint and a second rounding would give 1.
	if got, want := fma32(24929.0/16384, 673.0/1024, 0x1p-70), float32(1+0x1p-23); got != want {
		t.Fatalf("fma32 midpoint case = %g, want %g", got, want)
	}
	rng := rand.New(rand.NewPCG(9, 10))
	r32 := func() float32 {
		m := float32(1 + rng.IntN(1<<24))
		return float32(math.Ldexp(float64(m), rng.IntN(40)-60)) * float32(1-2*rng.IntN(2))
	}
	for i := 0; i < 200000; i++ {
		a, b := r32(), r32()
		var c float32
		switch i % 3 {
		case 0:
			c = r32()
		case 1: // cancel most of a*b
			c = -float32(float64(a) * float64(b))
		case 2: // a tiny term on a product at a midpoint
			a = float32(1 + rng.IntN(1<<12))
			b = float32(1 + rng.IntN(1<<12))
			c = float32(math.Ldexp(1, -30-rng.IntN(60))) * float32(1-2*rng.IntN(2))
		}
		if got, want := fma32(a, b, c), exact(a, b, c); got != want {
			t.Fatalf("fma32(%g, %g, %g) = %g, want %g", a, b, c, got, want)
		}
	}
}

// TestChoose checks that the environment turns the assembly variants off.
func TestChoose(t *testing.T) {
	t.Logf("active variant: %s", Variant())
	for _, v := range variants {
		if v.env != "" {
			t.Setenv(v.env, "1")
		}
	}
	if v := choose(); v != goVariant {
		t.Errorf("with every variant turned off, choose() = %s", v.name)
	}
	os.Unsetenv("HYPERAT_NOAVX2")
	for _, v := range variants {
		if v.name == "avx2" && v.supported && choose() != v {
			t.Errorf("with AVX-512 turned off, choose() = %s, want avx2", choose().name)
		}
	}
}

// TestTwinDocs checks that every assembly kernel has a plain-Go twin with
// the same doc comment.
func TestTwinDocs(t *testing.T) {
	docs := func(file string) map[string]string {
		f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, d := range f.Decls {
			if fd, ok := d.(*ast.FuncDecl); ok && fd.Doc != nil {
				m[fd.Name.Name] = fd.Doc.Text()
			}
		}
		return m
	}
	twins := docs("twins.go")
	n := 0
	for name, doc := range docs("stubs_amd64.go") {
		for _, suffix := range []string{"AVX512", "AVX2"} {
			base, ok := strings.CutSuffix(name, suffix)
			if !ok {
				continue
			}
			n++
			want, ok := twins[base+"Go"]
			if !ok {
				t.Errorf("%s has no twin %sGo", name, base)
			} else if strings.Replace(doc, name, base+"Go", 1) != want {
				t.Errorf("the doc comments of %s and %sGo differ", name, base)
			}
		}
	}
	if n != 2*len(twins) {
		t.Errorf("%d assembly kernels for %d twins", n, len(twins))
	}
}

// Arith is float32 arithmetic, element by element, in place too.
func TestArith(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	x, y := inputs(rng, 37, 30), inputs(rng, 37, 3)
	y[3], y[5] = 0, float32(math.Inf(-1))
	want := [4]func(a, b float32) float32{
		func(a, b float32) float32 { return a + b }, func(a, b float32) float32 { return a - b },
		func(a, b float32) float32 { return a * b }, func(a, b float32) float32 { return a / b },
	}
	for op, f := range want {
		dst := make([]float32, len(x))
		Arith(op, dst, x, y)
		for i := range x {
			if w := f(x[i], y[i]); !same(dst[i], w) {
				t.Fatalf("op %d element %d: %g, want %g", op, i, dst[i], w)
			}
		}
		in := append([]float32{}, x...)
		Arith(op, in, in, y)
		compare(t, fmt.Sprintf("op %d in place", op), x, in, dst)
	}
	defer func() {
		if recover() == nil {
			t.Error("Arith with different lengths did not panic")
		}
	}()
	Arith(Add, make([]float32, 3), x[:3], y[:2])
}

// TestLayerNormRows runs every variant's LayerNorm row kernels on all
// lengths to 300, several alignments and inputs with a mean far from zero,
// against the plain-Go twins bit for bit (sums and rows), and checks the
// twins against float64 arithmetic.
func TestLayerNormRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	same64 := func(a, b float64) bool { return math.Float64bits(a) == math.Float64bits(b) || a != a && b != b }
	for _, v := range supported() {
		t.Run(v.name, func(t *testing.T) {
			for n := 0; n <= 300; n++ {
				for off := 0; off < 4; off++ {
					x := copyAt(inputs(rng, n, 3), off)
					if off == 1 {
						for i := range x {
							x[i] = 100 + float32(rng.NormFloat64())
						}
					}
					dy := copyAt(inputs(rng, n, 2), (off+1)%4)
					g := copyAt(inputs(rng, n, 1.5), (off+2)%4)
					b := copyAt(inputs(rng, n, 0.5), (off+3)%4)
					what := fmt.Sprintf("n=%d off=%d", n, off)
					s, q := v.rowSums(x)
					ws, wq := rowSumsGo(x)
					if !same64(s, ws) || !same64(q, wq) {
						t.Fatalf("rowSums %s: %v, %v; twin %v, %v", what, s, q, ws, wq)
					}
					m, sc := float32(0.25), float32(1.75)
					if n > 0 && !math.IsNaN(ws) && !math.IsInf(ws, 0) {
						m = float32(ws / float64(n))
					}
					sg, sgx := v.gradSums(x, dy, g, m, sc)
					wg, wgx := normGradSumsGo(x, dy, g, m, sc)
					if !same64(sg, wg) || !same64(sgx, wgx) {
						t.Fatalf("normGradSums %s: %v, %v; twin %v, %v", what, sg, sgx, wg, wgx)
					}
					want := make([]float32, n)
					normRowGo(want, x, g, b, m, sc)
					buf, dst := guarded(n, off)
					v.normRow(dst, x, g, b, m, sc)
					checkGuards(t, "normRow", buf, off, n)
					compare(t, "normRow "+what, x, dst, want)
					mg, mgx := float32(0.125), float32(-0.5)
					normGradRowGo(want, x, dy, g, m, sc, mg, mgx)
					buf, dst = guarded(n, off)
					v.gradRow(dst, x, dy, g, m, sc, mg, mgx)
					checkGuards(t, "normGradRow", buf, off, n)
					compare(t, "normGradRow "+what, x, dst, want)
				}
			}
		})
	}
	// the twins compute what they say, on finite rows
	for _, n := range []int{1, 7, 16, 50, 128, 768} {
		x := inputs(rng, n, 3)
		dy, g, b := inputs(rng, n, 2), inputs(rng, n, 1.5), inputs(rng, n, 0.5)
		for i := range x {
			for _, a := range []*float32{&x[i], &dy[i], &g[i], &b[i]} {
				if f := float64(*a); math.IsNaN(f) || math.IsInf(f, 0) || math.Abs(f) > 1e4 {
					*a = 0.5
				}
			}
		}
		var es, eq float64
		for _, v := range x {
			es += float64(v)
			eq += float64(v) * float64(v)
		}
		s, q := RowSums(x)
		if math.Abs(s-es) > 1e-9*(1+math.Abs(es)) || math.Abs(q-eq) > 1e-9*(1+eq) {
			t.Fatalf("RowSums n=%d: %v, %v; float64 sums %v, %v", n, s, q, es, eq)
		}
		m, sc := float32(es/float64(n)), float32(0.8)
		var eg, egx float64
		for i, v := range x {
			tt := float64(dy[i]) * float64(g[i])
			eg += tt
			egx += tt * (float64(v) - float64(m)) * float64(sc)
		}
		sg, sgx := NormGradSums(x, dy, g, m, sc)
		if math.Abs(sg-eg) > 1e-5*(1+math.Abs(eg)) || math.Abs(sgx-egx) > 1e-5*(1+math.Abs(egx)) {
			t.Fatalf("NormGradSums n=%d: %v, %v; float64 %v, %v", n, sg, sgx, eg, egx)
		}
		y := make([]float32, n)
		NormRow(y, x, g, b, m, sc)
		mg, mgx := float32(0.3), float32(-0.2)
		dx := make([]float32, n)
		NormGradRow(dx, x, dy, g, m, sc, mg, mgx)
		for i, v := range x {
			h := (float64(v) - float64(m)) * float64(sc)
			if e := h*float64(g[i]) + float64(b[i]); math.Abs(float64(y[i])-e) > 1e-5*(1+math.Abs(e)) {
				t.Fatalf("NormRow n=%d: y[%d] = %v, float64 %v", n, i, y[i], e)
			}
			e := float64(sc) * (float64(dy[i])*float64(g[i]) - float64(mg) - h*float64(mgx))
			if math.Abs(float64(dx[i])-e) > 1e-5*(1+math.Abs(e)) {
				t.Fatalf("NormGradRow n=%d: dx[%d] = %v, float64 %v", n, i, dx[i], e)
			}
		}
	}
}

// TestSoftmaxGradRows runs every variant on all row lengths to 300 and
// several alignments against the plain-Go twin bit for bit, and checks the
// result against float64 arithmetic.
func TestSoftmaxGradRows(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, v := range supported() {
		t.Run(v.name, func(t *testing.T) {
			for n := 0; n <= 300; n++ {
				for off := 0; off < 4; off++ {
					y := copyAt(softmaxInputs(rng, n), off)
					softmaxRowGo(y, y)
					dy := copyAt(inputs(rng, n, 2), (off+1)%4)
					want := make([]float32, n)
					softmaxGradRowGo(want, y, dy)
					buf, dst := guarded(n, off)
					v.smGradRow(dst, y, dy)
					checkGuards(t, "softmaxGradRow", buf, off, n)
					compare(t, fmt.Sprintf("softmaxGradRow n=%d off=%d", n, off), y, dst, want)
				}
			}
		})
	}
	for _, n := range []int{1, 5, 50, 197} {
		y := softmaxInputs(rng, n)
		for i := range y {
			if math.IsNaN(float64(y[i])) || math.IsInf(float64(y[i]), 0) {
				y[i] = 0
			}
		}
		SoftmaxRows(y, y, 1, n)
		dy := make([]float32, n)
		for i := range dy {
			dy[i] = float32(rng.NormFloat64())
		}
		dx := make([]float32, n)
		SoftmaxGradRows(dx, y, dy, 1, n)
		var s float64
		for i := range y {
			s += float64(dy[i]) * float64(y[i])
		}
		for i := range y {
			if e := float64(y[i]) * (float64(dy[i]) - s); math.Abs(float64(dx[i])-e) > 1e-6*(1+math.Abs(e)) {
				t.Fatalf("n=%d: dx[%d] = %v, float64 %v", n, i, dx[i], e)
			}
		}
	}
}
