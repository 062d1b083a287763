package model

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/npy"
)

// ceSeed is d(mean cross-entropy)/dlogits.
func ceSeed(labels []int) func(*graph.Tensor) *graph.Tensor {
	return func(l *graph.Tensor) *graph.Tensor {
		n, k := l.Shape[0], l.Shape[1]
		s := graph.NewTensor(graph.Float32, l.Shape)
		for i := 0; i < n; i++ {
			row := l.F[i*k : (i+1)*k]
			m := math.Inf(-1)
			for _, v := range row {
				m = max(m, float64(v))
			}
			z := 0.0
			for _, v := range row {
				z += math.Exp(float64(v) - m)
			}
			for j, v := range row {
				p := math.Exp(float64(v)-m) / z
				if j == labels[i] {
					p--
				}
				s.F[i*k+j] = float32(p / float64(n))
			}
		}
		return s
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
