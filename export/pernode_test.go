package export_test

import (
	"path/filepath"
	"testing"

	"github.com/hyperat/hyperat/export"
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/internal/exporttest"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/layers"
)

// A weight keyed "initializer@output" gives only the node producing output
// its own copy of a shared initializer: the others keep reading the original.
// The export reproduces the in-memory model with that split, in our engine
// and in onnxruntime.
func TestPerNodeWeightOfSharedInitializer(t *testing.T) {
	dir := testutil.SharedModels()
	if dir == "" {
		t.Skip("../shared/models not present")
	}
	src := filepath.Join(dir, "timm_vit_c32_dynamo_op18.onnx")
	p, _ := exporttest.Decode(t, src)
	m := exporttest.Imported(t, p, dir)
	// a bias initializer read by several nodes
	uses := m.Graph.Consumers()
	var shared *graph.Value
	var reader *graph.Node
	for _, v := range m.Graph.Params {
		if u := uses[v]; len(u) > 2 && v.DType == graph.Float32 && len(v.Const.Shape) == 1 {
			for _, n := range u {
				if n.Op == "Add" {
					shared, reader = v, n
				}
			}
		}
		if shared != nil {
			break
		}
	}
	if shared == nil {
		t.Fatal("no shared bias initializer in the dynamo export")
	}
	nt := shared.Const.Clone()
	for i := range nt.F {
		nt.F[i] += 0.5 + float32(i%7)/10
	}
	key := layers.WeightKey{Init: shared.Name, Reader: reader.Outputs[0].Name}
	w := map[layers.WeightKey]*graph.Tensor{key: nt}
	out := filepath.Join(t.TempDir(), "robust.onnx")
	if _, err := export.Merged(p, dir, w, out, export.Options{}); err != nil {
		t.Fatal(err)
	}
	ref := exporttest.Reference(t, m, w)
	got := exporttest.LoadClassifier(t, out)
	orig := exporttest.LoadClassifier(t, src)
	x := exporttest.Pixels(got, 2, 5)
	a, b, o := exporttest.Logits(t, got, x), exporttest.Logits(t, ref, x), exporttest.Logits(t, orig, x)
	if d := testutil.MaxAbsDiff(a.F, b.F); d > 1e-4 {
		t.Fatalf("export differs from the reference by %g", d)
	}
	if d := testutil.MaxAbsDiff(a.F, o.F); d < 1e-3 {
		t.Fatal("the per-node weight changed nothing")
	}
	if d := testutil.MaxAbsDiff(exporttest.ORTLogits(t, out, x).F, a.F); d > 1e-4 {
		t.Fatalf("onnxruntime differs from our engine by %g", d)
	}
	// only one extra initializer, and the original is still there
	q, _ := exporttest.Decode(t, out)
	if len(q.Graph.Initializer) != len(p.Graph.Initializer)+1 {
		t.Fatalf("%d initializers, want %d", len(q.Graph.Initializer), len(p.Graph.Initializer)+1)
	}
}
