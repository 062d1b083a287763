package compile_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/testutil"
)

func countOps(g *graph.Graph) map[string]int {
	m := map[string]int{}
	for _, n := range g.Nodes {
		m[n.Op]++
	}
	return m
}

// Decomposed LayerNorm (TorchScript, opset 14) and erf-GELU become fused
// operators, and the logits do not move.
func TestRecognizeFusesLayerNormAndGelu(t *testing.T) {
	cases := []struct {
		file     string
		ln, gelu int // at least
	}{
		{testutil.Fixture("models", "tv_vit_op14.onnx"), 5, 2},
		{testutil.Fixture("models", "hf_vit_op15.onnx"), 5, 2},
	}
	if d := testutil.SharedModels(); d != "" {
		cases = append(cases, struct {
			file     string
			ln, gelu int
		}{filepath.Join(d, "timm_vit_c32_dynamo_op18.onnx"), 9, 4})
	}
	for _, c := range cases {
		t.Run(filepath.Base(c.file), func(t *testing.T) {
			m, err := onnximport.Load(c.file)
			if err != nil {
				t.Fatal(err)
			}
			on, err := compile.Compile(m.Graph, compile.Options{Batch: 2, Verify: true})
			if err != nil {
				t.Fatal(err)
			}
			off, err := compile.Compile(m.Graph, compile.Options{Batch: 2, Disable: []string{"recognize"}})
			if err != nil {
				t.Fatal(err)
			}
			ops := countOps(on.Graph)
			if ops["LayerNormalization"] < c.ln || ops["Gelu"] < c.gelu || ops["Erf"] > 0 || ops["ReduceMean"] > 0 {
				t.Fatalf("after recognition: %v", ops)
			}
			x := graph.NewTensor(graph.Float32, on.Inputs[0].StaticShape())
			for i := range x.F {
				x.F[i] = float32(i%97) / 97
			}
			a, err := on.Run(x)
			if err != nil {
				t.Fatal(err)
			}
			b, err := off.Run(x)
			if err != nil {
				t.Fatal(err)
			}
			if d := testutil.MaxAbsDiff(a[0].F, b[0].F); d > 1e-5 {
				t.Fatalf("fused and unfused logits differ by %g", d)
			}
		})
	}
}

// MatMuls read transposed operands in place: fewer Transpose nodes, and the
// same input gradient as with the transposes materialized.
func TestFuseTransposesKeepsGradients(t *testing.T) {
	file := testutil.Fixture("models", "mnist_vit_op17.onnx")
	// attention unfused, so that its products and their transposes are
	// there to fuse
	on, x := gradProgram(t, file, 3, "fuse-attention")
	off, x2 := gradProgram(t, file, 3, "fuse-attention", "fuse-transpose")
	if a, b := countOps(on.Graph)["Transpose"], countOps(off.Graph)["Transpose"]; a >= b {
		t.Fatalf("%d transposes fused, %d not", a, b)
	}
	// none is left between products: transposed operands are read in
	// place, transposes of transposes cancel, and a transposed product is
	// computed transposed
	uses := on.Graph.Consumers()
	for _, n := range on.Graph.Nodes {
		if n.Op != "Transpose" || !swapsLast(n) {
			continue
		}
		if d := n.Inputs[0].Def; d != nil && d.Op == "MatMul" {
			t.Errorf("%s transposes a product", n.Name)
		}
		for _, u := range uses[n.Outputs[0]] {
			if u.Op == "MatMul" {
				t.Errorf("%s feeds product %s", n.Name, u.Name)
			}
		}
	}
	ins := inputsFor(on)
	if _, err := on.Run(ins...); err != nil {
		t.Fatal(err)
	}
	if _, err := off.Run(ins...); err != nil {
		t.Fatal(err)
	}
	if e := testutil.MaxAbsDiff(on.Grad(x).F, off.Grad(x2).F) / testutil.MaxAbs(off.Grad(x2).F); e > 1e-5 {
		t.Fatalf("input gradients differ by %g relative", e)
	}
}

// swapsLast reports whether a Transpose exchanges only its last two dims.
func swapsLast(n *graph.Node) bool {
	p, ok := n.Attrs.Ints("perm")
	r := len(p)
	if !ok || r < 2 || p[r-2] != int64(r-1) || p[r-1] != int64(r-2) {
		return false
	}
	for i := 0; i < r-2; i++ {
		if p[i] != int64(i) {
			return false
		}
	}
	return true
}

// Attention's scale, when attention is not fused, goes into the products'
// alpha, forward and backward: fewer Mul nodes, the same logits and input
// gradient.
func TestFuseScalesKeepsGradients(t *testing.T) {
	file := testutil.Fixture("models", "mnist_vit_op17.onnx")
	// attention unfused, so that its products and their scale are there
	on, x := gradProgram(t, file, 3, "fuse-attention")
	off, x2 := gradProgram(t, file, 3, "fuse-attention", "fuse-scale")
	scaled := 0
	for _, n := range on.Graph.Nodes {
		if n.Op == "MatMul" && n.Attrs.Float("alpha", 1) != 1 {
			scaled++
		}
	}
	if a, b := countOps(on.Graph)["Mul"], countOps(off.Graph)["Mul"]; a >= b || scaled == 0 {
		t.Fatalf("%d Mul nodes fused, %d not; %d products scaled", a, b, scaled)
	}
	// a scale folded into a product's alpha rounds as the Mul did
	compareFused(t, on, off, x, x2, 0, 1e-5)
}

// A linear layer's bias joins its product: MatMulBias nodes, the same
// logits and input gradient.
func TestFuseBiasKeepsResults(t *testing.T) {
	file := testutil.Fixture("models", "mnist_vit_op17.onnx")
	on, x := gradProgram(t, file, 3)
	off, x2 := gradProgram(t, file, 3, "fuse-bias")
	if a, b := countOps(on.Graph)["MatMulBias"], countOps(off.Graph)["MatMulBias"]; a == 0 || b != 0 {
		t.Fatalf("%d MatMulBias nodes with the pass, %d without", a, b)
	}
	compareFused(t, on, off, x, x2, 1e-5, 1e-5)
}

// The residual stream's gradient is added to LayerNorm's input gradient as
// each row is computed: LayerNormGradAdd nodes in place of Adds, and the
// same logits and input gradient bit for bit.
func TestFuseAccumulateKeepsResults(t *testing.T) {
	for _, f := range []string{"mnist_vit_op17.onnx", "hf_vit_op16.onnx"} {
		file := testutil.Fixture("models", f)
		on, x := gradProgram(t, file, 3)
		off, x2 := gradProgram(t, file, 3, "fuse-accumulate")
		a, b := countOps(on.Graph), countOps(off.Graph)
		if a["LayerNormGradAdd"] == 0 || b["LayerNormGradAdd"] != 0 || a["Add"] >= b["Add"] ||
			a["LayerNormGradAdd"]+a["LayerNormGrad"] != b["LayerNormGrad"] {
			t.Fatalf("%s: with the pass %d LayerNormGradAdd, %d LayerNormGrad, %d Add; without %d, %d, %d", f,
				a["LayerNormGradAdd"], a["LayerNormGrad"], a["Add"], b["LayerNormGradAdd"], b["LayerNormGrad"], b["Add"])
		}
		compareFused(t, on, off, x, x2, 0, 0)
	}
}

// compareFused runs a program with a fusion and one without on the same
// inputs: logits within tol relative and input gradients within gtol
// relative (0: bit for bit).
func compareFused(t *testing.T, on, off *compile.Program, x, x2 *graph.Value, tol, gtol float64) {
	t.Helper()
	ins := inputsFor(on)
	o1, err := on.Run(ins...)
	if err != nil {
		t.Fatal(err)
	}
	l1 := append([]float32{}, o1[0].F...)
	o2, err := off.Run(ins...)
	if err != nil {
		t.Fatal(err)
	}
	if e := testutil.MaxAbsDiff(l1, o2[0].F) / testutil.MaxAbs(o2[0].F); e > tol {
		t.Errorf("logits differ by %g relative", e)
	}
	if e := testutil.MaxAbsDiff(on.Grad(x).F, off.Grad(x2).F) / testutil.MaxAbs(off.Grad(x2).F); e > gtol {
		t.Fatalf("input gradients differ by %g relative", e)
	}
}

// Attention's heads are read from the tensor that holds queries, keys and
// values, and written into the tokens' rows (the gradients of all three
// into one tensor), through views: fewer Transpose, Split and Concat steps, and the same logits and input gradient bit for bit (a
// product computes each element the same way whatever the layout it reads).
func TestFuseViewsKeepsResults(t *testing.T) {
	files := []string{
		testutil.Fixture("models", "mnist_vit_op17.onnx"),
		testutil.Fixture("models", "mnist_vit_op14.onnx"),
		testutil.Fixture("models", "tv_vit_op17.onnx"),
		testutil.Fixture("models", "hf_vit_op16.onnx"),
	}
	if d := testutil.SharedModels(); d != "" {
		files = append(files, filepath.Join(d, "timm_vit_c32_dynamo_op18.onnx"))
	}
	// with attention fused (Attention and AttentionGrad read and write
	// through views) and unfused (its products do)
	for _, file := range files {
		for _, fused := range []bool{true, false} {
			name := filepath.Base(file)
			var disable []string
			if !fused {
				name, disable = name+"/unfused", []string{"fuse-attention"}
			}
			t.Run(name, func(t *testing.T) { checkFuseViews(t, file, disable) })
		}
	}
}

func checkFuseViews(t *testing.T, file string, disable []string) {
	on, x := gradProgram(t, file, 3, disable...)
	off, x2 := gradProgram(t, file, 3, append(disable, "fuse-view")...)
	viewed := 0
	for _, n := range on.Graph.Nodes {
		if n.Op == "MatMul" && (n.Attrs.Has("viewA") || n.Attrs.Has("viewB") || n.Attrs.Has("viewC")) {
			viewed++
		}
		if n.Op == "MatMulConcat" {
			viewed += len(n.Inputs) / 2
		}
		if n.Op == "Attention" || n.Op == "AttentionGrad" {
			for k := range n.Attrs {
				if strings.HasPrefix(k, "view") {
					viewed++
				}
			}
		}
	}
	copies := func(p *compile.Program) int {
		c := countOps(p.Graph)
		return c["Transpose"] + c["Split"] + c["Concat"]
	}
	if viewed == 0 || copies(on) >= copies(off) {
		t.Fatalf("%d viewed products; %d Transpose, Split and Concat steps with the pass, %d without", viewed, copies(on), copies(off))
	}
	t.Logf("%d viewed products; %d Transpose, Split and Concat steps with the pass, %d without", viewed, copies(on), copies(off))
	compareFused(t, on, off, x, x2, 0, 0)
}
