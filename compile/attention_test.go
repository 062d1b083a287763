package compile_test

import (
	"path/filepath"
	"testing"

	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/testutil"
)

// attnFixture is a fixture model and what to expect of its fused
// attention: exact when its scale is a multiplication (the fused program
// is then the unfused one bit for bit: the same products, bias addition
// and softmax, the scale folded into alpha either way; a division becomes
// alpha = 1/d, which rounds differently), all when every softmax is
// attention's (Swin's shifted windows reshape the scores to add their mask
// and stay unfused), bias when a position bias computed from weights is
// added to the scores (it is a constant, and attention fused, only while
// those weights are).
type attnFixture struct{ exact, all, bias bool }

func attnFixtures() map[string]attnFixture {
	fs := map[string]attnFixture{
		testutil.Fixture("models", "mnist_vit_op17.onnx"): {exact: true, all: true},
		testutil.Fixture("models", "mnist_vit_op14.onnx"): {exact: true, all: true},
		testutil.Fixture("models", "tv_vit_op17.onnx"):    {exact: true, all: true},
		testutil.Fixture("models", "hf_vit_op16.onnx"):    {all: true},
		// the scale multiplies q, which the unfused program folds into
		// the product's alpha: (s q) k against s (q k)
		testutil.Fixture("models", "tv_swin_t_op17.onnx"):   {bias: true},
		testutil.Fixture("models", "tv_maxvit_t_op17.onnx"): {all: true, bias: true},
	}
	if d := testutil.SharedModels(); d != "" {
		// the exported attention scales q and k apart
		fs[filepath.Join(d, "timm_vit_c32_dynamo_op18.onnx")] = attnFixture{all: true}
	}
	return fs
}

// Attention becomes one Attention node per block, forward, and one
// AttentionGrad in the gradient, on every fixture ViT; the logits and the
// input gradient are those of the unfused program.
func TestFuseAttentionKeepsResults(t *testing.T) {
	for file, fx := range attnFixtures() {
		t.Run(filepath.Base(file), func(t *testing.T) {
			on, x := gradProgram(t, file, 3)
			off, x2 := gradProgram(t, file, 3, "fuse-attention")
			cOn, cOff := countOps(on.Graph), countOps(off.Graph)
			if cOn["Attention"] == 0 || cOn["AttentionGrad"] != cOn["Attention"] || cOff["Attention"] != 0 ||
				cOn["Softmax"]+cOn["Attention"] != cOff["Softmax"] || (fx.all && cOn["Softmax"] != 0) {
				t.Fatalf("with the pass: %d Attention, %d AttentionGrad, %d Softmax; without: %d Attention", cOn["Attention"], cOn["AttentionGrad"], cOn["Softmax"], cOff["Attention"])
			}
			t.Logf("%d Attention nodes; %d steps with the pass, %d without", cOn["Attention"], len(on.Graph.Nodes), len(off.Graph.Nodes))
			if fx.exact {
				compareFused(t, on, off, x, x2, 0, 0)
				return
			}
			compareFused(t, on, off, x, x2, 1e-6, 1e-5)
		})
	}
}

// The training pass's gradients (every weight's, and the input's; only
// the linear layers' weights where a position bias is computed from the
// others) through fused attention are the unfused program's: bit for bit
// where the forward is, within float32 rounding otherwise.
func TestFuseAttentionParamGrads(t *testing.T) {
	for file, fx := range attnFixtures() {
		t.Run(filepath.Base(file), func(t *testing.T) {
			run := func(disable ...string) (*compile.Program, []*graph.Value) {
				m, err := onnximport.Load(file)
				if err != nil {
					t.Fatal(err)
				}
				g := m.Graph
				wrt := []*graph.Value{g.Inputs[0]}
				linear := map[*graph.Value]bool{}
				for _, n := range g.Nodes {
					if n.Op == "MatMul" || n.Op == "Gemm" {
						linear[n.Inputs[1]] = true
					}
				}
				for _, p := range g.Params {
					if p.DType == graph.Float32 && (!fx.bias || linear[p]) {
						wrt = append(wrt, p)
					}
				}
				_, loss := withCE(g, 10)
				p, err := compile.Compile(g, compile.Options{Batch: 2, Verify: true, Disable: disable, Vars: wrt[1:],
					Grad: &compile.GradSpec{Loss: loss, Wrt: wrt}})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := p.Run(inputsFor(p)...); err != nil {
					t.Fatal(err)
				}
				return p, wrt
			}
			on, w1 := run()
			off, w2 := run("fuse-attention")
			if countOps(on.Graph)["AttentionGrad"] == 0 {
				t.Fatal("no AttentionGrad in the training program")
			}
			// relative to each gradient, with a floor for gradients that
			// are zero but for rounding (a key's bias: softmax ignores
			// what it adds to every score of a row)
			tol, floor := 1e-5, 0.0
			for i := range w2 {
				floor = max(floor, 1e-6*testutil.MaxAbs(off.Grad(w2[i]).F))
			}
			if fx.exact {
				tol, floor = 0, 0
			}
			for i := range w1 {
				g1, g2 := on.Grad(w1[i]).F, off.Grad(w2[i]).F
				scale := testutil.MaxAbs(g2)
				if d := testutil.MaxAbsDiff(g1, g2); d > tol*scale+floor {
					t.Errorf("gradient of %s differs by %g (largest %g)", w1[i].Name, d, scale)
				}
			}
		})
	}
}
