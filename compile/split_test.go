package compile

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/kernels"
)

// Conv and ConvGradInput split their images over the cores and into chunks:
// the output and the input gradient are those of a direct loop over the
// convolution's sums, and the same bits whatever the number of cores and
// the chunk size.
func TestConvSplitDeterministic(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	defer func(f int) { convChunkFloats = f }(convChunkFloats)
	const n, c, h, wd, m, group, k = 7, 4, 20, 20, 6, 2, 3
	g := graph.New()
	x := g.AddInput("x", graph.Float32, graph.StaticShape(n, c, h, wd))
	r := rand.New(rand.NewPCG(11, 12))
	wt := randTensor(r, []int{m, c / group, k, k}, -1, 1)
	bias := randTensor(r, []int{m}, -1, 1)
	y := op(g, "Conv", graph.Attrs{"group": int64(group), "strides": []int64{1, 2}, "pads": []int64{1, 1, 1, 0}},
		x, g.Const("w", wt), g.Const("b", bias))
	oh, ow := h, (wd+1-k)/2+1
	rt := randTensor(r, []int{n, m, oh, ow}, -1, 1)
	loss := op(g, "ReduceSum", graph.Attrs{"keepdims": int64(0)}, op(g, "Mul", nil, y, g.Const("R", rt)))
	g.Outputs = []*graph.Value{loss, y}
	in := randTensor(r, []int{n, c, h, wd}, -1, 1)

	// The direct sums, in float64: y, and dx = the adjoint applied to R.
	wantY := make([]float64, n*m*oh*ow)
	wantDX := make([]float64, n*c*h*wd)
	cg, mg := c/group, m/group
	for b := 0; b < n; b++ {
		for o := 0; o < m; o++ {
			gi := o / mg
			for i := 0; i < oh; i++ {
				for j := 0; j < ow; j++ {
					yi := ((b*m+o)*oh+i)*ow + j
					s := float64(bias.F[o])
					for ci := 0; ci < cg; ci++ {
						ch := gi*cg + ci
						for p := 0; p < k; p++ {
							for q := 0; q < k; q++ {
								hi, wi := i-1+p, 2*j-1+q
								if hi < 0 || hi >= h || wi < 0 || wi >= wd {
									continue
								}
								xi := ((b*c+ch)*h+hi)*wd + wi
								wv := float64(wt.F[((o*cg+ci)*k+p)*k+q])
								s += wv * float64(in.F[xi])
								wantDX[xi] += wv * float64(rt.F[yi])
							}
						}
					}
					wantY[yi] = s
				}
			}
		}
	}
	var refY, refDX []float32
	for _, chunk := range []int{1 << 21, 2 * cg * k * k * oh * ow} {
		convChunkFloats = chunk
		for _, procs := range []int{1, 2, 3, 8} {
			runtime.GOMAXPROCS(procs)
			p, err := Compile(g, Options{Verify: true, Grad: &GradSpec{Loss: loss, Wrt: []*graph.Value{x}}})
			if err != nil {
				t.Fatal(err)
			}
			outs, err := p.Run(in)
			if err != nil {
				t.Fatal(err)
			}
			gotY, gotDX := outs[1].F, p.Grad(x).F
			if refY == nil {
				refY, refDX = append([]float32(nil), gotY...), append([]float32(nil), gotDX...)
				closeTo(t, "y", gotY, wantY)
				closeTo(t, "dx", gotDX, wantDX)
			}
			sameBitsAs(t, "y", procs, chunk, gotY, refY)
			sameBitsAs(t, "dx", procs, chunk, gotDX, refDX)
		}
	}
}

func closeTo(t *testing.T, name string, got []float32, want []float64) {
	t.Helper()
	for i := range want {
		if d := math.Abs(float64(got[i]) - want[i]); d > 1e-5*(1+math.Abs(want[i])) {
			t.Fatalf("%s[%d] = %g, the direct sum is %g", name, i, got[i], want[i])
		}
	}
}

func sameBitsAs(t *testing.T, name string, procs, chunk int, got, ref []float32) {
	t.Helper()
	for i := range ref {
		if math.Float32bits(got[i]) != math.Float32bits(ref[i]) {
			t.Fatalf("GOMAXPROCS %d, chunks of %d floats: %s[%d] = %g, was %g", procs, chunk, name, i, got[i], ref[i])
		}
	}
}

// The gradient of a slice of a large tensor zeroes the rest of it on all
// cores, whatever its buffer held before.
func TestSliceGradZeroes(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	const rows, cols = 40, 3000
	g := graph.New()
	x := g.AddInput("x", graph.Float32, graph.StaticShape(rows, cols))
	ints := func(v ...int64) *graph.Value { return g.Const("c", graph.I64([]int{len(v)}, v)) }
	y := op(g, "Slice", nil, x, ints(1000), ints(2000), ints(1))
	r := rand.New(rand.NewPCG(5, 6))
	rt := randTensor(r, []int{rows, 1000}, 1, 2)
	loss := op(g, "ReduceSum", graph.Attrs{"keepdims": int64(0)}, op(g, "Mul", nil, op(g, "Mul", nil, y, y), g.Const("R", rt)))
	g.Outputs = []*graph.Value{loss}
	p, err := Compile(g, Options{Grad: &GradSpec{Loss: loss, Wrt: []*graph.Value{x}}})
	if err != nil {
		t.Fatal(err)
	}
	in := randTensor(r, []int{rows, cols}, -1, 1)
	for _, procs := range []int{1, 2, 3, 8} {
		runtime.GOMAXPROCS(procs)
		for i := range p.Grad(x).F {
			p.Grad(x).F[i] = float32(math.NaN()) // what another use of the memory left
		}
		if _, err := p.Run(in); err != nil {
			t.Fatal(err)
		}
		dx := p.Grad(x).F
		for i := 0; i < rows; i++ {
			for j := 0; j < cols; j++ {
				want := float32(0)
				if j >= 1000 && j < 2000 { // d(R y^2)/dy
					want = 2 * in.F[i*cols+j] * rt.F[i*1000+j-1000]
				}
				if got := dx[i*cols+j]; got != want {
					t.Fatalf("GOMAXPROCS %d: dx[%d,%d] = %g, want %g", procs, i, j, got, want)
				}
			}
		}
	}
}

// Gemm's C, broadcast to every row or whole, is added by the product
// itself or filled on all cores: the same bits as filling Y with it and
// multiplying with beta, on any number of cores.
func TestGemmBiasSplit(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	const m, k, n = 300, 70, 90
	r := rand.New(rand.NewPCG(7, 8))
	a, b := randTensor(r, []int{m, k}, -1, 1), randTensor(r, []int{n, k}, -1, 1)
	for _, cs := range []struct {
		shape []int
		beta  float32
	}{{[]int{n}, 1}, {[]int{1, n}, 1}, {[]int{n}, 0.5}, {[]int{m, n}, 1}, {[]int{m, 1}, 2}} {
		c := randTensor(r, cs.shape, -1, 1)
		// What the product gives after Y is filled with C.
		want := make([]float32, m*n)
		cmap := indexMapBroadcast([]int{m, n}, cs.shape)
		for i, j := range cmap {
			want[i] = c.F[j]
		}
		kernels.Sgemm(false, true, m, n, k, 1.5, a.F, k, b.F, k, cs.beta, want, n)
		g := graph.New()
		x := g.AddInput("x", graph.Float32, graph.StaticShape(m, k))
		g.Outputs = []*graph.Value{op(g, "Gemm", graph.Attrs{"transB": int64(1), "alpha": float32(1.5), "beta": cs.beta},
			x, g.Const("b", b), g.Const("c", c))}
		for _, procs := range []int{1, 2, 3, 8} {
			runtime.GOMAXPROCS(procs)
			p, err := Compile(g, Options{Verify: true})
			if err != nil {
				t.Fatal(err)
			}
			outs, err := p.Run(a)
			if err != nil {
				t.Fatal(err)
			}
			sameBitsAs(t, fmt.Sprintf("C %v beta %g: y", cs.shape, cs.beta), procs, 0, outs[0].F, want)
		}
	}
}

// Reductions over leading or trailing axes split their outputs over the
// cores; each output is the float64 sum of its inputs in input order, the
// same bits on any number of cores as the reduction on one.
func TestReduceSplit(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	shape := []int{6, 1, 50, 70}
	r := rand.New(rand.NewPCG(9, 10))
	in := randTensor(r, shape, -1, 1)
	in.F[777] = float32(math.NaN()) // ReduceMax keeps a NaN
	for _, kind := range []string{"ReduceSum", "ReduceMean", "ReduceMax", "ReduceL2"} {
		for _, axes := range [][]int64{{0, 1, 2}, {0, 2}, {3}, {2, 3}, {1, 3}, {2}} {
			// The reference: every output's inputs in input order.
			red := make([]bool, len(shape))
			for _, a := range axes {
				red[a] = true
			}
			ost, acc := make([]int, len(shape)), 1
			for i := len(shape) - 1; i >= 0; i-- {
				if !red[i] {
					ost[i], acc = acc, acc*shape[i]
				}
			}
			m := indexMap(shape, ost, 0)
			sums := make([]float64, acc)
			for i := range sums {
				if kind == "ReduceMax" {
					sums[i] = math.Inf(-1)
				}
			}
			for i, o := range m {
				sums[o] = accumulate(kind, sums[o], float64(in.F[i]))
			}
			want := make([]float32, acc)
			for i, s := range sums {
				switch kind {
				case "ReduceMean":
					s /= float64(len(m) / acc)
				case "ReduceL2":
					s = math.Sqrt(s)
				}
				want[i] = float32(s)
			}
			g := graph.New()
			x := g.AddInput("x", graph.Float32, graph.StaticShape(shape...))
			g.Outputs = []*graph.Value{op(g, kind, graph.Attrs{"keepdims": int64(0)}, x, g.Const("axes", graph.I64([]int{len(axes)}, axes)))}
			for _, procs := range []int{1, 2, 3, 8} {
				runtime.GOMAXPROCS(procs)
				p, err := Compile(g, Options{Verify: true})
				if err != nil {
					t.Fatal(err)
				}
				outs, err := p.Run(in)
				if err != nil {
					t.Fatal(err)
				}
				sameBitsAs(t, fmt.Sprintf("%s over %v", kind, axes), procs, 0, outs[0].F, want)
			}
		}
	}
}
