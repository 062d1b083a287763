package app

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/hyperat/hyperat/internal/exporttest"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/onnx"
)

// A model whose large initializers are external data (as PyTorch writes a
// model beyond 2 GB) imports into a workspace with its data file, and
// exports as a model and one data file, OUT.data, holding every external
// initializer (tuned or not), which imports to the tuned model and runs in
// onnxruntime as it does.
func TestExportExternalData(t *testing.T) {
	src, _ := exporttest.Decode(t, exporttest.Fixture(exporttest.TVModel))
	srcDir := t.TempDir()
	var data []byte
	external := 0
	for _, tp := range src.Graph.Initializer {
		if len(tp.GetRawData()) < 1024 {
			continue // the small ones stay inside, as onnx.save_model's size_threshold leaves them
		}
		for len(data)%64 != 0 {
			data = append(data, 0)
		}
		off := len(data)
		data = append(data, tp.RawData...)
		tp.ExternalData = []*onnx.StringStringEntryProto{
			{Key: proto.String("location"), Value: proto.String("src.onnx.data")},
			{Key: proto.String("offset"), Value: proto.String(strconv.Itoa(off))},
			{Key: proto.String("length"), Value: proto.String(strconv.Itoa(len(tp.RawData)))},
		}
		tp.RawData, tp.DataLocation = nil, onnx.TensorProto_EXTERNAL.Enum()
		external++
	}
	if external == 0 || external == len(src.Graph.Initializer) {
		t.Fatalf("%d of %d initializers external", external, len(src.Graph.Initializer))
	}
	exporttest.WriteFile(t, filepath.Join(srcDir, "src.onnx.data"), data)
	srcPath := exporttest.WriteFile(t, filepath.Join(srcDir, "src.onnx"), exporttest.Encode(t, src))

	dir, tu, m := newTunedWorkspace(t, srcPath)
	if got, _ := os.ReadFile(filepath.Join(dir, "src.onnx.data")); string(got) != string(data) {
		t.Fatal("the workspace holds no copy of the data file")
	}
	outDir := t.TempDir()
	out := filepath.Join(outDir, "robust.onnx")
	s, err := exportWorkspace(exportRequest{Workspace: dir, Out: out})
	if err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(outDir)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"robust.onnx", "robust.onnx.data"}) {
		t.Errorf("the export wrote %v, want the model and its data file", names)
	}
	got, _ := exporttest.Decode(t, out)
	exporttest.CompareModels(t, src, got, tu.Weights)
	for i, tp := range got.Graph.Initializer {
		if was := src.Graph.Initializer[i].GetDataLocation(); tp.GetDataLocation() != was {
			t.Errorf("initializer %s: data location %s, was %s", tp.GetName(), tp.GetDataLocation(), was)
		}
		if loc, _, _ := extOf(tp); tp.GetDataLocation() == onnx.TensorProto_EXTERNAL && loc != "robust.onnx.data" {
			t.Errorf("initializer %s is in %q", tp.GetName(), loc)
		}
	}
	if s.Model.MaxDiff != 0 {
		t.Errorf("the written model differs from the tuned one by %g", s.Model.MaxDiff)
	}
	c := exporttest.LoadClassifier(t, out)
	x := exporttest.Pixels(c, 3, 2)
	want := exporttest.Logits(t, exporttest.Reference(t, m, tu.Weights), x)
	if d := testutil.MaxAbsDiff(exporttest.Logits(t, c, x).F, want.F); d != 0 {
		t.Errorf("the export differs from the tuned model by %g", d)
	}
	if d := testutil.MaxAbsDiff(exporttest.ORTLogits(t, out, x).F, want.F); d > 1e-4 {
		t.Errorf("onnxruntime on the export differs from the tuned model by %g", d)
	}
}

func extOf(tp *onnx.TensorProto) (loc string, off, n int) {
	for _, kv := range tp.GetExternalData() {
		v, _ := strconv.Atoi(kv.GetValue())
		switch kv.GetKey() {
		case "location":
			loc = kv.GetValue()
		case "offset":
			off = v
		case "length":
			n = v
		}
	}
	return loc, off, n
}
