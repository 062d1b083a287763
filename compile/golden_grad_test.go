package compile_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/layers"
	"github.com/hyperat/hyperat/npy"
)

type goldenMeta struct {
	Loss       float64  `json:"loss"`
	Labels     []int    `json:"labels"`
	GradParams []string `json:"grad_params"`
	Models     []string `json:"models"`
}

// relErr is max|a-b| / max|b|: the measure the project states its gradient
// tolerance in.
func relErr(a, b []float32) float64 {
	return testutil.MaxAbsDiff(a, b) / max(testutil.MaxAbs(b), 1e-30)
}

// transpose2 transposes a [r, c] matrix.
func transpose2(t *graph.Tensor) *graph.Tensor {
	r, c := t.Shape[0], t.Shape[1]
	out := graph.NewTensor(graph.Float32, []int{c, r})
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			out.F[j*r+i] = t.F[i*c+j]
		}
	}
	return out
}

// Whole-model gradients of the mean cross-entropy match PyTorch's (computed
// in float64) within 1e-3 relative: the input gradient, and the weight
// gradients of every golden weight the file keeps under its PyTorch name.
func TestFixtureGradientsMatchPyTorch(t *testing.T) {
	metas, _ := filepath.Glob(testutil.Fixture("golden", "*", "meta.json"))
	if len(metas) == 0 {
		t.Fatal("no fixture goldens")
	}
	for _, mf := range metas {
		dir := filepath.Dir(mf)
		var meta goldenMeta
		data, err := os.ReadFile(mf)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &meta); err != nil {
			t.Fatal(err)
		}
		input, err := npy.ReadFile(filepath.Join(dir, "input.npy"))
		if err != nil {
			t.Fatal(err)
		}
		wantGX, err := npy.ReadFile(filepath.Join(dir, "grad_input.npy"))
		if err != nil {
			t.Fatal(err)
		}
		logits, err := npy.ReadFile(filepath.Join(dir, "logits.npy"))
		if err != nil {
			t.Fatal(err)
		}
		for _, rel := range meta.Models {
			t.Run(filepath.Base(rel), func(t *testing.T) {
				m, err := onnximport.Load(testutil.Fixture(rel))
				if err != nil {
					t.Fatal(err)
				}
				g := m.Graph
				x := g.Inputs[0]
				classes := logits.Shape[1]
				_, loss := withCE(g, classes)
				wrt := []*graph.Value{x}
				rep, err := layers.Recognize(m.Graph)
				if err != nil {
					t.Fatal(err)
				}
				vars, wantW, transposed := goldenWeights(t, g, rep, meta.GradParams, dir, rel)
				wrt = append(wrt, vars...)
				prog, err := compile.Compile(g, compile.Options{Batch: input.Shape[0], Vars: vars, Verify: true,
					Grad: &compile.GradSpec{Loss: loss, Wrt: wrt}})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := prog.Run(input, oneHot(meta.Labels, classes)); err != nil {
					t.Fatal(err)
				}
				if d := float64(prog.Loss().F[0]) - meta.Loss; d > 1e-5 || d < -1e-5 {
					t.Errorf("loss %g, PyTorch %g", prog.Loss().F[0], meta.Loss)
				}
				if e := relErr(prog.Grad(x).F, wantGX.F); e > 1e-3 {
					t.Errorf("input gradient: relative error %g > 1e-3", e)
				} else {
					t.Logf("input gradient: relative error %.2g", e)
				}
				for p, want := range wantW {
					got := prog.Grad(p)
					if transposed[p] {
						got = transpose2(got)
					}
					if !sameDims(got.Shape, want.Shape) {
						t.Errorf("%s: gradient shape %v, PyTorch %v", p.Name, got.Shape, want.Shape)
						continue
					}
					if e := relErr(got.F, want.F); e > 1e-3 {
						t.Errorf("%s: relative error %g > 1e-3", p.Name, e)
					} else {
						t.Logf("%s: relative error %.2g", strings.TrimPrefix(p.Name, "vit."), e)
					}
				}
				if len(wantW) != len(meta.GradParams) {
					t.Errorf("compared %d of %d weight gradients", len(wantW), len(meta.GradParams))
				}
			})
		}
	}
}

// goldenWeights finds the initializer of each golden weight gradient (by its
// PyTorch name, or through layer recognition where the exporter renamed a
// weight it stored transposed) and reads the expected gradient; transposed
// marks the weights ONNX holds as W^T of PyTorch's [out, in].
func goldenWeights(t *testing.T, g *graph.Graph, rep *layers.Report, names []string, dir, rel string) (
	vars []*graph.Value, want map[*graph.Value]*graph.Tensor, transposed map[*graph.Value]bool) {
	t.Helper()
	want, transposed = map[*graph.Value]*graph.Tensor{}, map[*graph.Value]bool{}
	for _, name := range names {
		p := g.ParamByName(name)
		for _, l := range rep.Linears {
			if p != nil && l.Weight == p {
				transposed[p] = !l.Transposed
			}
		}
		if p == nil {
			for _, l := range rep.Linears {
				if l.Name+".weight" == name || l.Name+"_weight" == name {
					p = l.Weight
					transposed[p] = !l.Transposed
				}
			}
		}
		if p == nil {
			t.Errorf("%s: no initializer holds %s", rel, name)
			continue
		}
		w, err := npy.ReadFile(filepath.Join(dir, "grad_"+name+".npy"))
		if err != nil {
			t.Fatal(err)
		}
		want[p] = w
		vars = append(vars, p)
	}
	return vars, want, transposed
}

func sameDims(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
