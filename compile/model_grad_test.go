package compile_test

import (
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/testutil"
)

// withCE adds a one-hot label input and the mean cross-entropy loss.
func withCE(g *graph.Graph, classes int) (onehot, loss *graph.Value) {
	onehot = g.AddInput("onehot", graph.Float32, graph.Shape{{N: -1, Sym: "batch"}, {N: classes}})
	return onehot, testutil.CrossEntropy(g, g.Outputs[0], onehot)
}

func oneHot(labels []int, classes int) *graph.Tensor {
	t := graph.NewTensor(graph.Float32, []int{len(labels), classes})
	for i, l := range labels {
		t.F[i*classes+l] = 1
	}
	return t
}

// ce64 is the mean cross-entropy of float32 logits computed in float64.
func ce64(logits []float32, labels []int, classes int) float64 {
	s := 0.0
	for i, l := range labels {
		row := logits[i*classes : (i+1)*classes]
		m := math.Inf(-1)
		for _, v := range row {
			m = max(m, float64(v))
		}
		z := 0.0
		for _, v := range row {
			z += math.Exp(float64(v) - m)
		}
		s += m + math.Log(z) - float64(row[l])
	}
	return s / float64(len(labels))
}

// The input gradient of the whole shared ViT agrees with central differences.
// Tolerance: logits are float32 (relative rounding 6e-8, |logit| < 10), so the
// difference quotient with h = 1e-2 carries about 3e-5 of noise, and its O(h^2)
// truncation about as much; 1e-2 of the largest gradient entry is well above
// both and far below any error in a rule.
func TestSharedModelInputGradFD(t *testing.T) {
	dir := testutil.SharedModels()
	if dir == "" {
		t.Skip("../shared/models not present")
	}
	input, _ := testutil.LoadSharedGolden(t, dir)
	m, err := onnximport.Load(filepath.Join(dir, "timm_vit_c32_dynamo_op18.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	g := m.Graph
	x := g.Inputs[0]
	_, loss := withCE(g, 10)
	batch := input.Shape[0]
	labels := []int{3, 7, 1, 0, 9, 4, 2, 8}[:batch]
	bwd, err := compile.Compile(g, compile.Options{Batch: batch, Verify: true, Grad: &compile.GradSpec{Loss: loss, Wrt: []*graph.Value{x}}})
	if err != nil {
		t.Fatal(err)
	}
	oh := oneHot(labels, 10)
	if _, err := bwd.Run(input, oh); err != nil {
		t.Fatal(err)
	}
	grad := bwd.Grad(x).Clone()
	fwd, err := compile.Compile(m.Graph, compile.Options{Batch: batch})
	if err != nil {
		t.Fatal(err)
	}
	outs, _ := fwd.Run(input, oh)
	if d := math.Abs(float64(bwd.Loss().F[0]) - ce64(outs[0].F, labels, 10)); d > 1e-5 {
		t.Fatalf("loss %g differs from the float64 cross-entropy by %g", bwd.Loss().F[0], d)
	}
	scale := testutil.MaxAbs(grad.F)
	if scale == 0 {
		t.Fatal("gradient is all zero")
	}
	r := rand.New(rand.NewPCG(1, 2))
	const h = 1e-2
	for k := 0; k < 24; k++ {
		j := r.IntN(len(input.F))
		orig := input.F[j]
		input.F[j] = orig + h
		o, _ := fwd.Run(input, oh)
		fp := ce64(o[0].F, labels, 10)
		input.F[j] = orig - h
		o, _ = fwd.Run(input, oh)
		fm := ce64(o[0].F, labels, 10)
		input.F[j] = orig
		fd := (fp - fm) / (2 * h)
		if d := math.Abs(fd - float64(grad.F[j])); d > 1e-2*scale {
			t.Errorf("pixel %d: gradient %g, central difference %g (|diff| %g, scale %g)", j, grad.F[j], fd, d, scale)
		}
	}
}

// A program that asks only for the input gradient computes no weight gradient:
// no value of the lowered graph is the gradient of a weight.
func TestInputOnlyGradientHasNoWeightGradients(t *testing.T) {
	dir := testutil.SharedModels()
	path := filepath.Join(dir, "timm_vit_c32_dynamo_op18.onnx")
	if dir == "" {
		t.Skip("../shared/models not present")
	}
	m, err := onnximport.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	g := m.Graph
	_, loss := withCE(g, 10)
	var weights []*graph.Value
	for _, w := range g.Params {
		if w.DType == graph.Float32 {
			weights = append(weights, w)
		}
	}
	// The weights are variables (as in full fine-tuning) but only x is asked for.
	p, err := compile.Compile(g, compile.Options{Batch: 2, Vars: weights, Grad: &compile.GradSpec{Loss: loss, Wrt: []*graph.Value{g.Inputs[0]}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range p.GradientValues() {
		if of := p.GradientOf(v); of != nil && of.IsConst() {
			t.Errorf("value %s is the gradient of weight %s", v.Name, of.Name)
		}
	}
	if len(p.GradientValues()) == 0 {
		t.Fatal("no gradient values recorded")
	}
	// And with the weights asked for, their gradients are there.
	q, err := compile.Compile(g, compile.Options{Batch: 2, Vars: weights, Grad: &compile.GradSpec{Loss: loss, Wrt: weights}})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, v := range q.GradientValues() {
		if of := q.GradientOf(v); of != nil && of.IsConst() {
			n++
		}
	}
	if n < len(weights) {
		t.Fatalf("only %d weight-gradient values for %d weights", n, len(weights))
	}
}

// A vector-Jacobian program (Forward, then Backward with dL/dlogits computed
// outside the graph) gives the same input gradient as the in-graph loss.
func TestSeedForwardBackwardMatchesInGraphLoss(t *testing.T) {
	files, _ := filepath.Glob(testutil.Fixture("models", "*.onnx"))
	if len(files) == 0 {
		t.Fatal("no fixture models")
	}
	m, err := onnximport.Load(files[0])
	if err != nil {
		t.Fatal(err)
	}
	g := m.Graph
	x, logits := g.Inputs[0], g.Outputs[0]
	const batch, classes = 3, 10
	labels := []int{4, 0, 9}
	seed := g.AddInput("seed", graph.Float32, graph.Shape{{N: batch}, {N: classes}})
	vjp, err := compile.Compile(g, compile.Options{Batch: batch, Verify: true,
		Grad: &compile.GradSpec{Loss: logits, Seed: seed, Wrt: []*graph.Value{x}}})
	if err != nil {
		t.Fatal(err)
	}
	g.Inputs = g.Inputs[:1] // the seed is not part of the loss program
	_, loss := withCE(g, classes)
	ref, err := compile.Compile(g, compile.Options{Batch: batch, Grad: &compile.GradSpec{Loss: loss, Wrt: []*graph.Value{x}}})
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(9, 9))
	shape := x.Shape
	in := graph.NewTensor(graph.Float32, []int{batch, shape[1].N, shape[2].N, shape[3].N})
	for i := range in.F {
		in.F[i] = r.Float32()
	}
	if _, err := ref.Run(in, oneHot(labels, classes)); err != nil {
		t.Fatal(err)
	}
	outs, err := vjp.Forward(in)
	if err != nil {
		t.Fatal(err)
	}
	// dCE/dlogits = (softmax - onehot) / batch
	s := graph.NewTensor(graph.Float32, []int{batch, classes})
	for i, l := range labels {
		row := outs[0].F[i*classes : (i+1)*classes]
		mx := math.Inf(-1)
		for _, v := range row {
			mx = max(mx, float64(v))
		}
		z := 0.0
		for _, v := range row {
			z += math.Exp(float64(v) - mx)
		}
		for k, v := range row {
			p := math.Exp(float64(v)-mx) / z
			if k == l {
				p--
			}
			s.F[i*classes+k] = float32(p / batch)
		}
	}
	if err := vjp.Backward(s); err != nil {
		t.Fatal(err)
	}
	if e := testutil.MaxAbsDiff(vjp.Grad(x).F, ref.Grad(x).F) / testutil.MaxAbs(ref.Grad(x).F); e > 1e-5 {
		t.Fatalf("VJP input gradient differs from the in-graph loss's by %g relative", e)
	}
}
