package hyperat

import (
	"testing"

	"github.com/hyperat/hyperat/attack"
	"github.com/hyperat/hyperat/data"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/model"
)

// The validation of a tuning run (and the demo's table) and hyperat-eval
// run one attack: Evaluate's clean and pgd-K accuracies on the first test
// images equal attack.Evaluate's clean and pgd-K on the same model, images,
// eps and seed, whatever the batch sizes.
func TestEvaluateIsHyperatEvalPGD(t *testing.T) {
	c, err := model.Load(testutil.Fixture("models", "mnist_vit_op17.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	ds, err := data.Open(testutil.Fixture("mnist"), data.Test)
	if err != nil {
		t.Fatal(err)
	}
	n, eps, steps, seed := 24, 0.05, 5, uint64(3)
	if testing.Short() {
		n = 12
	}
	view := ds.View(1, 28, 28)
	idx := ds.First(n)
	x, y, err := view.Batch(idx)
	if err != nil {
		t.Fatal(err)
	}
	want, err := attack.Evaluate(c, x, y, eps, []string{"clean", "pgd-5"}, 7, seed, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !(want["pgd-5"] > 0 && want["pgd-5"] < want["clean"]) {
		t.Fatalf("the case does not separate the attacks: clean %v, pgd-5 %v", want["clean"], want["pgd-5"])
	}
	for _, bs := range []int{n, 5} {
		got, err := Evaluate(c, view, idx, bs, eps, steps, seed)
		if err != nil {
			t.Fatal(err)
		}
		if got.N != n || got.Clean != want["clean"] || got.Robust != want["pgd-5"] {
			t.Errorf("batch %d: Evaluate gives clean %v, PGD-%d %v on %d images; attack.Evaluate clean %v, pgd-5 %v",
				bs, got.Clean, steps, got.Robust, got.N, want["clean"], want["pgd-5"])
		}
	}
}
