package bench

import (
	"fmt"
	"math"
	"testing"
	"time"

	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
)

// attentionBlock is a ViT's attention between its two linear layers, as
// exporters write it: a packed [B, T, 3 H D] tensor reshaped, transposed and
// split into queries, keys and values, the scaled scores, their softmax,
// the weighted sum of the values and the heads moved back into the tokens'
// rows. The program computes it and the gradient of its input for a seed.
func attentionBlock(b testing.TB, batch, tokens, heads, dim int, disable ...string) *compile.Program {
	g := graph.New()
	ints := func(v ...int64) *graph.Value { return g.Const("i", graph.I64([]int{len(v)}, v)) }
	B, T, H, D := int64(batch), int64(tokens), int64(heads), int64(dim)
	qkv := g.AddInput("qkv", graph.Float32, graph.StaticShape(batch, tokens, 3*heads*dim))
	x := g.Op("Reshape", nil, qkv, ints(B, T, 3, H, D))
	x = g.Op("Transpose", graph.Attrs{"perm": []int64{2, 0, 3, 1, 4}}, x)
	sp := g.AddNode("Split", "split", []*graph.Value{x, ints(1, 1, 1)}, graph.Attrs{"axis": int64(0)}, "q", "k", "v")
	var qkvs [3]*graph.Value
	for i := range qkvs {
		qkvs[i] = g.Op("Squeeze", nil, sp.Outputs[i], ints(0))
	}
	kt := g.Op("Transpose", graph.Attrs{"perm": []int64{0, 1, 3, 2}}, qkvs[1])
	s := g.Op("Mul", nil, g.Op("MatMul", nil, qkvs[0], kt), g.Const("scale", graph.ScalarF32(float32(1/math.Sqrt(float64(dim))))))
	o := g.Op("MatMul", nil, g.Op("Softmax", graph.Attrs{"axis": int64(-1)}, s), qkvs[2])
	o = g.Op("Transpose", graph.Attrs{"perm": []int64{0, 2, 1, 3}}, o)
	y := g.Op("Reshape", nil, o, ints(B, T, H*D))
	g.Outputs = []*graph.Value{y}
	seed := g.AddInput("seed", graph.Float32, graph.StaticShape(batch, tokens, heads*dim))
	p, err := compile.Compile(g, compile.Options{Batch: batch, Disable: disable,
		Grad: &compile.GradSpec{Loss: y, Seed: seed, Wrt: []*graph.Value{qkv}}})
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkAttentionBlock times attention's forward and input gradient as
// the engine runs it, fused (the fuse-attention pass) and not, on the MNIST
// fixture's shape (batch 64, 50 tokens, 4 heads of 32) and on ViT-B/16's
// (batch 8, 197 tokens, 12 heads of 64). Each iteration runs both programs,
// in alternating order, so that on a shared machine both meet the same
// load; it reports their medians and the median of the ratios (speedup:
// unfused / fused).
func BenchmarkAttentionBlock(b *testing.B) {
	for _, sh := range [][4]int{{64, 50, 4, 32}, {8, 197, 12, 64}} {
		b.Run(fmt.Sprintf("%dx%dx%dx%d", sh[0], sh[1], sh[2], sh[3]), func(b *testing.B) {
			fused := attentionBlock(b, sh[0], sh[1], sh[2], sh[3])
			unfused := attentionBlock(b, sh[0], sh[1], sh[2], sh[3], "fuse-attention")
			x := RandomBatch(sh[0], []int{sh[1], 3 * sh[2] * sh[3]}, 1)
			seed := RandomBatch(sh[0], []int{sh[1], sh[2] * sh[3]}, 2)
			pairs(b, fused, unfused, x, seed)
		})
	}
}

// BenchmarkAttentionModel times one PGD step on the fixture MNIST ViT
// (forward plus input gradient at batch 64, what an attack pass of the
// HyperAT iteration runs) with attention fused and not, in alternation as
// BenchmarkAttentionBlock does, and the steps of attention inside it
// (Program.Profile: the attention operators, the softmax and its gradient,
// and the products of the scores' shape and of the heads').
func BenchmarkAttentionModel(b *testing.B) {
	compileModel := func(disable ...string) *compile.Program {
		m, err := onnximport.Load(benchModel(b))
		if err != nil {
			b.Fatal(err)
		}
		g := m.Graph
		seed := g.AddInput("seed", graph.Float32, g.Outputs[0].Shape)
		p, err := compile.Compile(g, compile.Options{Batch: 64, Disable: disable,
			Grad: &compile.GradSpec{Loss: g.Outputs[0], Seed: seed, Wrt: []*graph.Value{g.Inputs[0]}}})
		if err != nil {
			b.Fatal(err)
		}
		return p
	}
	fused, unfused := compileModel(), compileModel("fuse-attention")
	x := RandomBatch(64, fused.Inputs[0].StaticShape()[1:], 1)
	seed := RandomBatch(64, fused.Outputs[0].StaticShape()[1:], 2)
	fused.Profile(true)
	unfused.Profile(true)
	n := pairs(b, fused, unfused, x, seed)
	b.ReportMetric(attentionTime(fused).Seconds()*1e3/float64(n), "fused-attn-ms")
	b.ReportMetric(attentionTime(unfused).Seconds()*1e3/float64(n), "unfused-attn-ms")
}

// attentionTime sums the profiled time of a program's attention steps: the
// fused operators, or the softmax, its gradient and the batched products
// of the heads (those with 4-D results; the linear layers' are 3-D or
// 2-D).
func attentionTime(p *compile.Program) time.Duration {
	var t time.Duration
	for _, st := range p.StepTimes() {
		switch n := st.Node; n.Op {
		case "Attention", "AttentionGrad", "Softmax", "SoftmaxGrad", "MatMulConcat":
			t += st.Time
		case "MatMul":
			if len(n.Outputs[0].StaticShape()) == 4 {
				t += st.Time
			}
		}
	}
	return t
}

// pairs runs the forward and backward of two programs in turn, the order
// alternating, and reports their medians and the median ratio of the pairs;
// it returns how many times each ran (the first, untimed, included).
func pairs(b *testing.B, fused, unfused *compile.Program, x, seed *graph.Tensor) int {
	run := func(p *compile.Program) time.Duration {
		t0 := time.Now()
		if _, err := p.Forward(x); err != nil {
			b.Fatal(err)
		}
		if err := p.Backward(seed); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	run(fused)
	run(unfused)
	var tf, tu, ratio []time.Duration
	for i := 0; b.Loop(); i++ {
		var f, u time.Duration
		if i%2 == 0 {
			f, u = run(fused), run(unfused)
		} else {
			u, f = run(unfused), run(fused)
		}
		tf, tu = append(tf, f), append(tu, u)
		ratio = append(ratio, time.Duration(float64(time.Second)*u.Seconds()/f.Seconds()))
	}
	b.ReportMetric(Median(tf).Seconds()*1e3, "fused-ms")
	b.ReportMetric(Median(tu).Seconds()*1e3, "unfused-ms")
	b.ReportMetric(Median(ratio).Seconds(), "speedup")
	return len(tf) + 1
}
