package export_test

import (
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/exporttest"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/layers"
)

// modelFiles are the fixture models and the shared ones when present.
func modelFiles(t *testing.T) []string {
	t.Helper()
	files, _ := filepath.Glob(testutil.Fixture("models", "*.onnx"))
	if d := testutil.SharedModels(); d != "" {
		more, _ := filepath.Glob(filepath.Join(d, "*.onnx"))
		files = append(files, more...)
	}
	if len(files) == 0 {
		t.Fatal("no fixture models")
	}
	return files
}

// perturbed returns new values for the weights of every recognized layer
// (the head included), each initializer once: W + 0.05 N(0, 1).
func perturbed(t *testing.T, m *onnximport.Model, seed uint64) map[layers.WeightKey]*graph.Tensor {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 11))
	w := map[layers.WeightKey]*graph.Tensor{}
	for _, l := range exporttest.Targets(t, m) {
		if _, ok := w[layers.WeightKey{Init: l.Weight.Name}]; ok {
			continue
		}
		nt := l.Weight.Const.Clone()
		for i := range nt.F {
			nt.F[i] += float32(0.05 * rng.NormFloat64())
		}
		w[layers.WeightKey{Init: l.Weight.Name}] = nt
	}
	if len(w) == 0 {
		t.Fatal("no layer recognized")
	}
	return w
}
