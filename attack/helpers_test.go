package attack

import (
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/loss"
	"github.com/hyperat/hyperat/model"
)

// linear is a linear classifier z = W x + b on flat images, for tests whose
// answers are known in closed form.
type linear struct {
	shape []int       // [C, H, W]
	w     [][]float64 // [classes][C*H*W]
	b     []float64
	calls int // model passes, forward or gradient
}

func (l *linear) Classes() int { return len(l.w) }

func (l *linear) logits(x *graph.Tensor) *graph.Tensor {
	n, d := x.Shape[0], graph.Numel(l.shape)
	out := graph.NewTensor(graph.Float32, []int{n, len(l.w)})
	for i := 0; i < n; i++ {
		for k, wk := range l.w {
			s := l.b[k]
			for j, v := range x.F[i*d : (i+1)*d] {
				s += wk[j] * float64(v)
			}
			out.F[i*len(l.w)+k] = float32(s)
		}
	}
	return out
}

func (l *linear) Logits(x *graph.Tensor) (*graph.Tensor, error) {
	l.calls++
	if len(x.Shape) != 4 || !slices.Equal(x.Shape[1:], l.shape) {
		return nil, fmt.Errorf("linear: input %v, want [N %v]", x.Shape, l.shape)
	}
	return l.logits(x), nil
}

func (l *linear) InputGrad(x *graph.Tensor, seed func(*graph.Tensor) *graph.Tensor) (*graph.Tensor, *graph.Tensor, error) {
	z, err := l.Logits(x)
	if err != nil {
		return nil, nil, err
	}
	s := seed(z.Clone())
	n, d, k := x.Shape[0], graph.Numel(l.shape), len(l.w)
	g := graph.NewTensor(graph.Float32, x.Shape)
	for i := 0; i < n; i++ {
		for j := 0; j < d; j++ {
			v := 0.0
			for c := 0; c < k; c++ {
				v += float64(s.F[i*k+c]) * l.w[c][j]
			}
			g.F[i*d+j] = float32(v)
		}
	}
	return z, g, nil
}

// newLinear draws a linear model with the given classes and input shape.
func newLinear(rng *rand.Rand, classes int, shape []int) *linear {
	d := graph.Numel(shape)
	l := &linear{shape: shape, w: make([][]float64, classes), b: make([]float64, classes)}
	for k := range l.w {
		l.w[k] = make([]float64, d)
		for j := range l.w[k] {
			l.w[k][j] = rng.NormFloat64()
		}
		l.b[k] = rng.NormFloat64()
	}
	return l
}

// minMargin is min over the eps ball and [0, 1] of z_y - z_k, exactly: the
// sample can be fooled into class k iff it is negative (or zero).
func (l *linear) minMargin(x []float32, y, k int, eps float64) float64 {
	m := l.b[y] - l.b[k]
	for j, v := range x {
		a := l.w[y][j] - l.w[k][j]
		lo, hi := max(float64(v)-eps, 0), min(float64(v)+eps, 1)
		if a > 0 {
			m += a * lo
		} else {
			m += a * hi
		}
	}
	return m
}

// worst is min over k != y of minMargin, with the class reaching it.
func (l *linear) worst(x []float32, y int, eps float64) (float64, int) {
	best, arg := math.Inf(1), -1
	for k := range l.w {
		if k != y {
			if m := l.minMargin(x, y, k, eps); m < best {
				best, arg = m, k
			}
		}
	}
	return best, arg
}

// checkResult asserts what every attack promises: each example within eps
// of its x and in [0, 1], Fooled exactly where the model is wrong on the
// example (and every sample wrong on x fooled).
func checkResult(t *testing.T, name string, m Model, x *graph.Tensor, y []int, eps float64, res *Result) {
	t.Helper()
	n, d := x.Shape[0], graph.Numel(x.Shape[1:])
	if res == nil || res.Adv == nil || !slices.Equal(res.Adv.Shape, x.Shape) || len(res.Adv.F) != len(x.F) || len(res.Fooled) != n {
		t.Fatalf("%s: result has the wrong shape", name)
	}
	for i, v := range res.Adv.F {
		if !(v >= 0 && v <= 1) {
			t.Fatalf("%s: sample %d pixel %d = %v is outside [0, 1]", name, i/d, i%d, v)
		}
		if dv := math.Abs(float64(v) - float64(x.F[i])); !(dv <= eps) {
			t.Fatalf("%s: sample %d pixel %d moved by %v > eps %v", name, i/d, i%d, dv, eps)
		}
	}
	clean, err := m.Logits(x)
	if err != nil {
		t.Fatal(err)
	}
	adv, err := m.Logits(res.Adv)
	if err != nil {
		t.Fatal(err)
	}
	k := m.Classes()
	for i := 0; i < n; i++ {
		wrong := loss.Argmax(adv.F[i*k:(i+1)*k]) != y[i]
		if res.Fooled[i] != wrong {
			t.Errorf("%s: sample %d reported fooled=%v, but the model is wrong on its example: %v", name, i, res.Fooled[i], wrong)
		}
		if loss.Argmax(clean.F[i*k:(i+1)*k]) != y[i] && !res.Fooled[i] {
			t.Errorf("%s: sample %d is misclassified clean but reported robust", name, i)
		}
	}
}

// sameResult asserts two results are bit-for-bit equal.
func sameResult(t *testing.T, name string, a, b *Result) {
	t.Helper()
	if !slices.Equal(a.Fooled, b.Fooled) {
		t.Errorf("%s: fooled differs between two runs with the same seed", name)
	}
	for i := range a.Adv.F {
		if math.Float32bits(a.Adv.F[i]) != math.Float32bits(b.Adv.F[i]) {
			t.Errorf("%s: example element %d differs between two runs with the same seed", name, i)
			return
		}
	}
}

// mnistTest returns the first n MNIST test images [n, 1, 28, 28] in [0, 1]
// and their labels, read from the fixtures' gzipped IDX files.
func mnistTest(t testing.TB, n int) (*graph.Tensor, []int) {
	t.Helper()
	img := readIDX(t, testutil.Fixture("mnist", "t10k-images-idx3-ubyte.gz"), 3)
	lab := readIDX(t, testutil.Fixture("mnist", "t10k-labels-idx1-ubyte.gz"), 1)
	if n > len(lab) || len(img) < n*784 {
		t.Fatalf("the MNIST fixture has %d test images, want %d", len(lab), n)
	}
	x := graph.NewTensor(graph.Float32, []int{n, 1, 28, 28})
	for i := range x.F {
		x.F[i] = float32(img[i]) / 255
	}
	y := make([]int, n)
	for i := range y {
		y[i] = int(lab[i])
	}
	return x, y
}

// readIDX reads the unsigned-byte body of a gzipped IDX file of rank dims.
func readIDX(t testing.TB, path string, dims int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	data, err := io.ReadAll(z)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if len(data) < 4+4*dims || data[2] != 0x08 || int(data[3]) != dims {
		t.Fatalf("%s: not an unsigned-byte IDX file of rank %d", path, dims)
	}
	n := 1
	for i := 0; i < dims; i++ {
		n *= int(binary.BigEndian.Uint32(data[4+4*i:]))
	}
	body := data[4+4*dims:]
	if len(body) != n {
		t.Fatalf("%s: %d bytes of data, header says %d", path, len(body), n)
	}
	return body
}

var (
	fixtureMu     sync.Mutex
	fixtureModels = map[string]*model.Classifier{}
)

// fixtureModel loads fixtures/models/name.onnx once per test binary; it
// skips the test when the file is not there.
func fixtureModel(t testing.TB, name string) *model.Classifier {
	t.Helper()
	fixtureMu.Lock()
	defer fixtureMu.Unlock()
	if c, ok := fixtureModels[name]; ok {
		return c
	}
	path := testutil.Fixture("models", name+".onnx")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("%s is not there", filepath.Base(path))
	}
	c, err := model.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	fixtureModels[name] = c
	return c
}

// predicted returns the model's predictions on x.
func predicted(t testing.TB, m Model, x *graph.Tensor) []int {
	t.Helper()
	l, err := m.Logits(x)
	if err != nil {
		t.Fatal(err)
	}
	k := m.Classes()
	y := make([]int, x.Shape[0])
	for i := range y {
		y[i] = loss.Argmax(l.F[i*k : (i+1)*k])
	}
	return y
}
