package compile_test

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/kernels"
)

// A linear layer compiled with BF16 products gives, bit for bit, what
// kernels.BF16 gives; with FP32, what kernels.FP32 gives.
func TestPrecisionLinearLayer(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	const m, k, n = 37, 45, 29
	g := graph.New()
	x := g.AddInput("x", graph.Float32, graph.StaticShape(m, k))
	w := g.AddInput("w", graph.Float32, graph.StaticShape(k, n))
	bias := g.AddInput("b", graph.Float32, graph.StaticShape(n))
	g.Outputs = []*graph.Value{g.Op("Add", nil, g.Op("MatMul", nil, x, w), bias)}
	in := []*graph.Tensor{graph.NewTensor(graph.Float32, []int{m, k}), graph.NewTensor(graph.Float32, []int{k, n}), graph.NewTensor(graph.Float32, []int{n})}
	for _, v := range in {
		for i := range v.F {
			v.F[i] = float32(r.NormFloat64())
		}
	}
	for _, prec := range []kernels.Precision{kernels.FP32, kernels.BF16} {
		p, err := compile.Compile(g, compile.Options{Verify: true, Precision: prec})
		if err != nil {
			t.Fatal(err)
		}
		outs, err := p.Run(in...)
		if err != nil {
			t.Fatal(err)
		}
		want := make([]float32, m*n)
		prec.SgemmBias(false, false, m, n, k, 1, in[0].F, k, in[1].F, n, in[2].F, want, n)
		for i, v := range want {
			if got := outs[0].F[i]; math.Float32bits(got) != math.Float32bits(v) {
				t.Fatalf("%v: element %d = %g, kernels.%v gives %g", prec, i, got, prec, v)
			}
		}
	}
}

// mnistVJP compiles the fixture MNIST ViT's vector-Jacobian program for the
// input gradient, in precision prec.
func mnistVJP(t *testing.T, batch int, prec kernels.Precision) (*compile.Program, *graph.Value) {
	t.Helper()
	m, err := onnximport.Load(testutil.Fixture("models", "mnist_vit_op17.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	g := m.Graph
	seed := g.AddInput("seed", graph.Float32, graph.Shape{{N: batch}, {N: 10}})
	p, err := compile.Compile(g, compile.Options{Batch: batch, Verify: true, Precision: prec,
		Grad: &compile.GradSpec{Loss: g.Outputs[0], Seed: seed, Wrt: g.Inputs[:1]}})
	if err != nil {
		t.Fatal(err)
	}
	return p, g.Inputs[0]
}

// runVJP returns the logits and the input gradient for the cotangent of
// the mean cross-entropy of labels 0, 1, 2, ...
func runVJP(t *testing.T, p *compile.Program, x *graph.Value, in *graph.Tensor) (logits, grad []float32) {
	t.Helper()
	outs, err := p.Forward(in)
	if err != nil {
		t.Fatal(err)
	}
	logits = append([]float32(nil), outs[0].F...)
	batch := in.Shape[0]
	seed := graph.NewTensor(graph.Float32, []int{batch, 10})
	for i := 0; i < batch; i++ {
		row := logits[i*10 : i*10+10]
		mx := math.Inf(-1)
		for _, v := range row {
			mx = max(mx, float64(v))
		}
		z := 0.0
		for _, v := range row {
			z += math.Exp(float64(v) - mx)
		}
		for j, v := range row {
			q := math.Exp(float64(v)-mx) / z
			if j == i%10 {
				q--
			}
			seed.F[i*10+j] = float32(q / float64(batch))
		}
	}
	if err := p.Backward(seed); err != nil {
		t.Fatal(err)
	}
	return logits, append([]float32(nil), p.Grad(x).F...)
}

// The fixture ViT with BF16 products: every product of the forward and the
// gradient is marked; logits and input gradient stay close to FP32's (the
// gradient's signs, all an attack uses, agree on nearly every pixel that
// matters); results repeat bit for bit across runs and core counts; where
// BF16 falls back to FP32, they are FP32's.
func TestPrecisionModel(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	const batch = 8
	p32, x := mnistVJP(t, batch, kernels.FP32)
	p16, x16 := mnistVJP(t, batch, kernels.BF16)
	products := 0
	for _, n := range p16.Graph.Nodes {
		switch n.Op {
		case "MatMul", "Gemm", "MatMulBias", "MatMulConcat", "Attention", "AttentionGrad":
			products++
			if n.Attrs.Str("precision", "") != "bf16" {
				t.Errorf("%s %s is not marked bf16", n.Op, n.Name)
			}
			if ps, ok := n.Attrs["products"].([]graph.Attrs); ok {
				for _, a := range ps {
					if a.Str("precision", "") != "bf16" {
						t.Errorf("a product of %s is not marked bf16", n.Name)
					}
				}
			}
		}
	}
	if products < 10 {
		t.Fatalf("only %d products in the program", products)
	}
	if c := countOps(p16.Graph); c["Attention"] == 0 || c["AttentionGrad"] == 0 {
		t.Fatalf("attention is not fused: %d Attention, %d AttentionGrad", c["Attention"], c["AttentionGrad"])
	}
	for _, n := range p32.Graph.Nodes {
		if n.Attrs.Has("precision") {
			t.Fatalf("the FP32 program marks %s %s", n.Op, n.Name)
		}
	}

	r := rand.New(rand.NewPCG(43, 44))
	in := graph.NewTensor(graph.Float32, []int{batch, 1, 28, 28})
	for i := range in.F {
		in.F[i] = r.Float32()
	}
	l32, g32 := runVJP(t, p32, x, in)
	l16, g16 := runVJP(t, p16, x16, in)
	if !kernels.BF16.Native() {
		for i := range l16 {
			if math.Float32bits(l16[i]) != math.Float32bits(l32[i]) {
				t.Fatalf("BF16 falls back to FP32 but logit %d differs", i)
			}
		}
		return
	}
	if e := testutil.MaxAbsDiff(l16, l32) / testutil.MaxAbs(l32); e > 0.03 || e == 0 {
		t.Errorf("BF16 logits differ from FP32's by %.3g of the largest (want in (0, 0.03])", e)
	}
	// Signs agree on the pixels whose gradient is not tiny.
	big, agree := 0, 0
	top := testutil.MaxAbs(g32)
	for i, v := range g32 {
		if math.Abs(float64(v)) > 1e-2*top {
			big++
			if (v > 0) == (g16[i] > 0) {
				agree++
			}
		}
	}
	if big == 0 || float64(agree) < 0.97*float64(big) {
		t.Errorf("BF16 gradient signs agree with FP32's on %d of %d pixels", agree, big)
	}
	t.Logf("BF16: logits within %.3g of the largest; gradient signs agree on %d of %d pixels (%.3g relative max difference)",
		testutil.MaxAbsDiff(l16, l32)/testutil.MaxAbs(l32), agree, big, testutil.MaxAbsDiff(g16, g32)/top)

	for _, procs := range []int{1, 3, 2} {
		runtime.GOMAXPROCS(procs)
		l, g := runVJP(t, p16, x16, in)
		for i := range l {
			if math.Float32bits(l[i]) != math.Float32bits(l16[i]) {
				t.Fatalf("GOMAXPROCS %d: logit %d differs", procs, i)
			}
		}
		for i := range g {
			if math.Float32bits(g[i]) != math.Float32bits(g16[i]) {
				t.Fatalf("GOMAXPROCS %d: gradient %d differs", procs, i)
			}
		}
	}
}
