// Package testutil holds helpers shared by the tests: locating fixtures and the
// shared models, reading goldens, and comparing tensors.
package testutil

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/hyperat/hyperat/graph"
)

// Root is the repository root.
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Fixture returns a path under fixtures/.
func Fixture(parts ...string) string {
	return filepath.Join(append([]string{Root(), "fixtures"}, parts...)...)
}

// SharedModels returns the folder of the shared models beside the repository,
// or "" when it does not exist (tests that need it skip then).
func SharedModels() string {
	d := filepath.Join(Root(), "..", "shared", "models")
	if st, err := os.Stat(d); err == nil && st.IsDir() {
		return d
	}
	return ""
}

// SharedGolden is the golden file of the shared timm models.
type SharedGolden struct {
	InputShape []int `json:"input_shape"`
	Input      any   `json:"input"`
	Logits     any   `json:"logits"`
}

// LoadSharedGolden reads timm_vit_c32_golden.json as tensors.
func LoadSharedGolden(t testing.TB, dir string) (input, logits *graph.Tensor) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "timm_vit_c32_golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g SharedGolden
	if err := json.Unmarshal(data, &g); err != nil {
		t.Fatal(err)
	}
	in := flatten(g.Input)
	lg := flatten(g.Logits)
	input = graph.F32(g.InputShape, in)
	if len(in) != graph.Numel(g.InputShape) {
		t.Fatalf("golden input has %d values for shape %v", len(in), g.InputShape)
	}
	logits = graph.F32([]int{g.InputShape[0], len(lg) / g.InputShape[0]}, lg)
	return input, logits
}

func flatten(v any) []float32 {
	switch x := v.(type) {
	case float64:
		return []float32{float32(x)}
	case []any:
		var out []float32
		for _, e := range x {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return nil
}

// MaxAbsDiff is max |a-b| over two equally sized float tensors (Inf if they differ in size or a NaN appears).
func MaxAbsDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	m := 0.0
	for i := range a {
		d := math.Abs(float64(a[i]) - float64(b[i]))
		if d != d {
			return math.Inf(1)
		}
		m = max(m, d)
	}
	return m
}

// MaxAbs is max |a|.
func MaxAbs(a []float32) float64 {
	m := 0.0
	for _, v := range a {
		m = max(m, math.Abs(float64(v)))
	}
	return m
}
