package model

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/loss"
	"github.com/hyperat/hyperat/npy"
)

// ceSeed is d(mean cross-entropy)/dlogits.
func ceSeed(labels []int) func(*graph.Tensor) *graph.Tensor {
	return func(l *graph.Tensor) *graph.Tensor {
		_, g := loss.MeanCE(l, labels)
		return g
	}
}

func TestClassifierMatchesGoldens(t *testing.T) {
	metas, _ := filepath.Glob(testutil.Fixture("golden", "*", "meta.json"))
	if len(metas) == 0 {
		t.Fatal("no goldens")
	}
	for _, mf := range metas {
		dir := filepath.Dir(mf)
		var meta struct {
			Labels []int    `json:"labels"`
			Models []string `json:"models"`
		}
		data, _ := os.ReadFile(mf)
		if err := json.Unmarshal(data, &meta); err != nil {
			t.Fatal(err)
		}
		x, _ := npy.ReadFile(filepath.Join(dir, "input.npy"))
		wantL, _ := npy.ReadFile(filepath.Join(dir, "logits.npy"))
		wantG, _ := npy.ReadFile(filepath.Join(dir, "grad_input.npy"))
		c, err := Load(testutil.Fixture(meta.Models[0]))
		if err != nil {
			t.Fatal(err)
		}
		if c.Classes() != wantL.Shape[1] {
			t.Fatalf("%s: %d classes, want %d", meta.Models[0], c.Classes(), wantL.Shape[1])
		}
		l, err := c.Logits(x)
		if err != nil {
			t.Fatal(err)
		}
		if d := testutil.MaxAbsDiff(l.F, wantL.F); d > 1e-4 {
			t.Errorf("%s: logits differ by %g", meta.Models[0], d)
		}
		l2, g, err := c.InputGrad(x, ceSeed(meta.Labels))
		if err != nil {
			t.Fatal(err)
		}
		if d := testutil.MaxAbsDiff(l2.F, l.F); d != 0 {
			t.Errorf("logits of the gradient program differ from the forward's by %g", d)
		}
		if e := testutil.MaxAbsDiff(g.F, wantG.F) / testutil.MaxAbs(wantG.F); e > 1e-3 {
			t.Errorf("%s: input gradient relative error %g", meta.Models[0], e)
		}
	}
}

func TestRejectsWrongInput(t *testing.T) {
	files, _ := filepath.Glob(testutil.Fixture("models", "*.onnx"))
	c, err := Load(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Logits(graph.NewTensor(graph.Float32, []int{2, 5, 9, 9})); err == nil {
		t.Fatal("a wrongly shaped batch was accepted")
	}
}

// Inspect finds the image shape and the classes, and refuses what is not an
// image classifier with the messages the commands print.
func TestInspect(t *testing.T) {
	m, err := onnximport.Load(testutil.Fixture("models", "tv_vit_op17.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := Inspect(m.Graph)
	if err != nil || s != (Shape{C: 3, H: 32, W: 32, Classes: 10}) {
		t.Fatalf("Inspect = %+v, %v; want 3x32x32, 10 classes, no fixed batch", s, err)
	}
	edit := func(f func(g *graph.Graph)) *graph.Graph {
		g := m.Graph.Clone()
		f(g)
		return g
	}
	for _, c := range []struct {
		name string
		g    *graph.Graph
		want []string
	}{
		{"two inputs", edit(func(g *graph.Graph) { g.AddInput("mask", graph.Float32, g.Inputs[0].Shape) }), []string{"2 inputs", "needs one"}},
		{"tokens", edit(func(g *graph.Graph) { g.Inputs[0].Shape = g.Inputs[0].Shape[:3] }), []string{"not an image classifier", `input "input"`, "[N, C, H, W]"}},
		{"symbolic width", edit(func(g *graph.Graph) { g.Inputs[0].Shape[3] = graph.Dim{N: -1, Sym: "w"} }), []string{"not an image classifier", "C, H and W fixed"}},
		{"features", edit(func(g *graph.Graph) {
			for _, n := range g.Nodes {
				if n.Op == "MatMul" {
					g.Outputs[0] = n.Outputs[0]
					return
				}
			}
		}), []string{"not an image classifier", "first output", "logits [N, classes]"}},
	} {
		if _, err := Inspect(c.g); err == nil || !containsAll(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one saying %q", c.name, err, c.want)
		}
	}
	fixed := edit(func(g *graph.Graph) { g.Inputs[0].Shape[0] = graph.Dim{N: 2} })
	if s, err := Inspect(fixed); err != nil || s.Batch != 2 || s.Classes != 10 {
		t.Errorf("fixed batch 2: %+v, %v", s, err)
	}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
