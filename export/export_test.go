package export_test

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/hyperat/hyperat/export"
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/internal/exporttest"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/layers"
	"github.com/hyperat/hyperat/onnx"
)

// Exporting no new weights gives back the source file, byte for byte.
func TestRoundTripBytes(t *testing.T) {
	for _, f := range modelFiles(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, data := exporttest.Decode(t, f)
			out := filepath.Join(t.TempDir(), "robust.onnx")
			r, err := export.Merged(src, filepath.Dir(f), nil, out, export.Options{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, data) {
				t.Fatalf("the export of an unchanged model differs from it: %d vs %d bytes", len(got), len(data))
			}
			if r.Replaced != 0 || r.MaxDiff != 0 || r.Size != int64(len(data)) || len(r.Files) != 0 {
				t.Errorf("report %+v", r)
			}
		})
	}
}

// Exporting new weights changes exactly those initializers' data: every node
// is byte-identical, and so is every other field of the model.
func TestMergedChangesOnlyWeights(t *testing.T) {
	for _, f := range modelFiles(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, _ := exporttest.Decode(t, f)
			m := exporttest.Imported(t, src, filepath.Dir(f))
			w := perturbed(t, m, 1)
			out := filepath.Join(t.TempDir(), "robust.onnx")
			r, err := export.Merged(src, filepath.Dir(f), w, out, export.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if r.Replaced != len(w) || r.MaxDiff != 0 || len(r.Batches) != 2 {
				t.Errorf("report %+v: want %d replaced, an exact match at two batch sizes", r, len(w))
			}
			got, _ := exporttest.Decode(t, out)
			exporttest.CompareModels(t, src, got, w)
		})
	}
}

// The exported model runs in onnxruntime and gives our logits, and the tuned
// model's, within 1e-4 at batch 1 and 5.
func TestMergedConformance(t *testing.T) {
	for _, f := range modelFiles(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			src, _ := exporttest.Decode(t, f)
			m := exporttest.Imported(t, src, filepath.Dir(f))
			w := perturbed(t, m, 2)
			out := filepath.Join(t.TempDir(), "robust.onnx")
			if _, err := export.Merged(src, filepath.Dir(f), w, out, export.Options{}); err != nil {
				t.Fatal(err)
			}
			ours, tuned, orig := exporttest.LoadClassifier(t, out), exporttest.Reference(t, m, w), exporttest.Reference(t, m, nil)
			for _, b := range []int{1, 5} {
				x := exporttest.Pixels(ours, b, uint64(b))
				got := exporttest.Logits(t, ours, x)
				want := exporttest.Logits(t, tuned, x)
				if d := testutil.MaxAbsDiff(got.F, want.F); d > 1e-4 {
					t.Errorf("batch %d: our logits of the export differ from the tuned model's by %g", b, d)
				}
				if d := testutil.MaxAbsDiff(got.F, exporttest.Logits(t, orig, x).F); d < 1e-3 {
					t.Errorf("batch %d: the export computes what the original does (difference %g)", b, d)
				}
				rt := exporttest.ORTLogits(t, out, x)
				if d := testutil.MaxAbsDiff(rt.F, got.F); d > 1e-4 || !slices.Equal(rt.Shape, got.Shape) {
					t.Errorf("batch %d: onnxruntime's logits %v differ from ours %v by %g", b, rt.Shape, got.Shape, d)
				}
			}
		})
	}
}

// storageModel edits the tv fixture: one target's weight in float_data, one
// in an external file (weights.bin), one untouched initializer in another
// external file under a subfolder (data/other.bin), a Constant node's tensor
// in a third (data/const.bin), written into dir.
func storageModel(t *testing.T, dir string) (path string, floatW, extW, otherInit string) {
	t.Helper()
	src, _ := exporttest.Decode(t, exporttest.Fixture(exporttest.TVModel))
	m := exporttest.Imported(t, src, filepath.Dir(exporttest.Fixture(exporttest.TVModel)))
	tg := exporttest.Targets(t, m)
	floatW, extW = tg[0].Weight.Name, tg[2].Weight.Name
	byName := map[string]*onnx.TensorProto{}
	for _, tp := range src.Graph.Initializer {
		byName[tp.GetName()] = tp
	}
	// an initializer no layer reads: the class token or the position embedding
	for _, tp := range src.Graph.Initializer {
		isW := false
		for _, l := range tg {
			isW = isW || l.Weight.Name == tp.GetName()
		}
		if !isW && len(tp.GetRawData()) >= 256 {
			otherInit = tp.GetName()
			break
		}
	}
	f := byName[floatW]
	f.FloatData, f.RawData = exporttest.Floats(f.RawData), nil
	externalize := func(tp *onnx.TensorProto, loc string, offset int) []byte {
		raw := tp.RawData
		tp.RawData = nil
		tp.DataLocation = onnx.TensorProto_EXTERNAL.Enum()
		tp.ExternalData = []*onnx.StringStringEntryProto{
			{Key: proto.String("location"), Value: proto.String(loc)},
			{Key: proto.String("offset"), Value: proto.String(strconv.Itoa(offset))},
			{Key: proto.String("length"), Value: proto.String(strconv.Itoa(len(raw)))},
		}
		return append(make([]byte, offset), raw...)
	}
	exporttest.WriteFile(t, filepath.Join(dir, "weights.bin"), externalize(byName[extW], "weights.bin", 128))
	os.MkdirAll(filepath.Join(dir, "data"), 0o755)
	exporttest.WriteFile(t, filepath.Join(dir, "data", "other.bin"), externalize(byName[otherInit], "data/other.bin", 0))
	for _, n := range src.Graph.Node {
		if n.GetOpType() == "Constant" && n.Attribute[0].T != nil && n.Attribute[0].T.RawData != nil {
			exporttest.WriteFile(t, filepath.Join(dir, "data", "const.bin"), externalize(n.Attribute[0].T, "data/const.bin", 8))
			break
		}
	}
	path = exporttest.WriteFile(t, filepath.Join(dir, "model.onnx"), exporttest.Encode(t, src))
	return path, floatW, extW, otherInit
}

// float_data stays float_data, raw_data raw_data; external initializers,
// replaced or not, go to OUT.data; the data file of a node's tensor is
// copied, so the output folder holds all the model needs; the source's
// files are untouched.
func TestStorageForms(t *testing.T) {
	srcDir := t.TempDir()
	path, floatW, extW, otherInit := storageModel(t, srcDir)
	src, _ := exporttest.Decode(t, path)
	m := exporttest.Imported(t, src, srcDir)
	w := perturbed(t, m, 3)
	before := exporttest.Snapshot(t, srcDir)

	outDir := t.TempDir()
	out := filepath.Join(outDir, "robust.onnx")
	r, err := export.Merged(src, srcDir, w, out, export.Options{})
	if err != nil {
		t.Fatal(err)
	}
	exporttest.SameFiles(t, before, exporttest.Snapshot(t, srcDir))
	dataFile := filepath.Join(outDir, "robust.onnx.data")
	wantFiles := []string{dataFile, filepath.Join(outDir, "data", "const.bin")}
	if strings.Join(r.Files, " ") != strings.Join(wantFiles, " ") {
		t.Errorf("files written %v, want %v", r.Files, wantFiles)
	}
	got, _ := exporttest.Decode(t, out)
	exporttest.CompareModels(t, src, got, w)
	for _, tp := range got.Graph.Initializer {
		switch tp.GetName() {
		case floatW:
			if tp.RawData != nil || testutil.MaxAbsDiff(tp.FloatData, w[layers.WeightKey{Init: floatW}].F) != 0 {
				t.Errorf("%s is not float_data with the new weights", floatW)
			}
		case extW:
			loc, off, n := extOf(tp)
			data, _ := os.ReadFile(dataFile)
			if loc != "robust.onnx.data" || off+n > len(data) || testutil.MaxAbsDiff(exporttest.Floats(data[off:off+n]), w[layers.WeightKey{Init: extW}].F) != 0 {
				t.Errorf("%s: external data %s offset %d length %d does not hold the new weights", extW, loc, off, n)
			}
		case otherInit:
			loc, off, n := extOf(tp)
			data, _ := os.ReadFile(dataFile)
			old, _ := os.ReadFile(filepath.Join(srcDir, "data", "other.bin"))
			if loc != "robust.onnx.data" || off%64 != 0 || off+n > len(data) || n != len(old) || !bytes.Equal(data[off:off+n], old) {
				t.Errorf("%s: external data %s offset %d length %d does not hold its bytes", otherInit, loc, off, n)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(outDir, "data", "other.bin")); err == nil {
		t.Errorf("data/other.bin was copied, though no tensor of the output reads it")
	}
	a, _ := os.Stat(filepath.Join(srcDir, "data", "const.bin"))
	b, _ := os.Stat(filepath.Join(outDir, "data", "const.bin"))
	if a == nil || b == nil || os.SameFile(a, b) {
		t.Errorf("data/const.bin is not an independent copy")
	}
	// the folder is self-contained: moved elsewhere, it still runs
	moved := filepath.Join(t.TempDir(), "moved")
	if err := os.Rename(outDir, moved); err != nil {
		t.Fatal(err)
	}
	c := exporttest.LoadClassifier(t, filepath.Join(moved, "robust.onnx"))
	x := exporttest.Pixels(c, 2, 9)
	want := exporttest.Logits(t, exporttest.Reference(t, m, w), x)
	if d := testutil.MaxAbsDiff(exporttest.Logits(t, c, x).F, want.F); d > 1e-4 {
		t.Errorf("the moved export differs from the tuned model by %g", d)
	}
	if d := testutil.MaxAbsDiff(exporttest.ORTLogits(t, filepath.Join(moved, "robust.onnx"), x).F, want.F); d > 1e-4 {
		t.Errorf("onnxruntime on the moved export differs from the tuned model by %g", d)
	}

	// Written beside the source: its data files are already there and stay as they were.
	out2 := filepath.Join(srcDir, "robust.onnx")
	r2, err := export.Merged(src, srcDir, w, out2, export.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(r2.Files) != 1 || r2.Files[0] != filepath.Join(srcDir, "robust.onnx.data") {
		t.Errorf("beside the source, files written %v", r2.Files)
	}
	after := exporttest.Snapshot(t, srcDir)
	for p, b := range before {
		if after[p] != b {
			t.Errorf("%s changed", p)
		}
	}

	// A copy target that exists with other contents is refused.
	busy := t.TempDir()
	os.MkdirAll(filepath.Join(busy, "data"), 0o755)
	exporttest.WriteFile(t, filepath.Join(busy, "data", "const.bin"), []byte("someone else's"))
	if _, err := export.Merged(src, srcDir, w, filepath.Join(busy, "robust.onnx"), export.Options{}); err == nil || !strings.Contains(err.Error(), "const.bin") {
		t.Errorf("an existing, different data file was not refused: %v", err)
	}
	if _, err := os.Stat(filepath.Join(busy, "robust.onnx")); err == nil {
		t.Errorf("a refused export wrote its model")
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

// Float16 and double initializers are not replaced: the export refuses.
func TestOtherFloatTypesRefused(t *testing.T) {
	for _, dt := range []onnx.TensorProto_DataType{onnx.TensorProto_FLOAT16, onnx.TensorProto_DOUBLE} {
		src, _ := exporttest.Decode(t, exporttest.Fixture(exporttest.TVModel))
		m := exporttest.Imported(t, src, filepath.Dir(exporttest.Fixture(exporttest.TVModel)))
		w := perturbed(t, m, 4)
		name := exporttest.Targets(t, m)[0].Weight.Name
		for _, tp := range src.Graph.Initializer {
			if tp.GetName() == name {
				tp.DataType = proto.Int32(int32(dt))
			}
		}
		out := filepath.Join(t.TempDir(), "robust.onnx")
		_, err := export.Merged(src, filepath.Dir(exporttest.Fixture(exporttest.TVModel)), w, out, export.Options{})
		if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), dt.String()) {
			t.Errorf("%s: %v", dt, err)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%s: a refused export wrote its model", dt)
		}
	}
}

// Bad weights are refused with an error naming them.
func TestBadWeights(t *testing.T) {
	src, _ := exporttest.Decode(t, exporttest.Fixture(exporttest.TVModel))
	m := exporttest.Imported(t, src, filepath.Dir(exporttest.Fixture(exporttest.TVModel)))
	name := exporttest.Targets(t, m)[0].Weight.Name
	good := m.Graph.ParamByName(name).Const
	nan := good.Clone()
	nan.F[3] = float32(math.NaN())
	for _, c := range []struct {
		what string
		w    map[layers.WeightKey]*graph.Tensor
		want string
	}{
		{"unknown", map[layers.WeightKey]*graph.Tensor{{Init: "no.such.weight"}: good}, "no.such.weight"},
		{"shape", map[layers.WeightKey]*graph.Tensor{{Init: name}: graph.NewTensor(graph.Float32, []int{3, 4})}, "shape"},
		{"nan", map[layers.WeightKey]*graph.Tensor{{Init: name}: nan}, "NaN"},
	} {
		out := filepath.Join(t.TempDir(), "robust.onnx")
		if _, err := export.Merged(src, filepath.Dir(exporttest.Fixture(exporttest.TVModel)), c.w, out, export.Options{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v", c.what, err)
		}
	}
}

// An initializer read by two layers is written once, and both read it.
func TestSharedInitializer(t *testing.T) {
	dir := t.TempDir()
	path, shared := exporttest.SharedModel(t, dir)
	src, _ := exporttest.Decode(t, path)
	m := exporttest.Imported(t, src, dir)
	n := 0
	for _, l := range exporttest.Targets(t, m) {
		if l.Weight.Name == shared {
			n++
		}
	}
	if n != 2 {
		t.Fatalf("%d layers read %s, want 2", n, shared)
	}
	w := perturbed(t, m, 5)
	out := filepath.Join(t.TempDir(), "robust.onnx")
	if _, err := export.Merged(src, dir, w, out, export.Options{}); err != nil {
		t.Fatal(err)
	}
	got, _ := exporttest.Decode(t, out)
	exporttest.CompareModels(t, src, got, w)
	count := 0
	for _, tp := range got.Graph.Initializer {
		if tp.GetName() == shared {
			count++
		}
	}
	readers := 0
	for _, nd := range got.Graph.Node {
		for _, in := range nd.Input {
			if in == shared {
				readers++
			}
		}
	}
	if count != 1 || readers != 2 {
		t.Errorf("%s: %d initializers, %d readers; want 1 and 2", shared, count, readers)
	}
	c := exporttest.LoadClassifier(t, out)
	x := exporttest.Pixels(c, 3, 5)
	if d := testutil.MaxAbsDiff(exporttest.ORTLogits(t, out, x).F, exporttest.Logits(t, exporttest.Reference(t, m, w), x).F); d > 1e-4 {
		t.Errorf("onnxruntime differs from the tuned model by %g", d)
	}
}

// The export never writes the source model or its data files, or a
// protected path; a failed check leaves nothing behind (an existing output
// stays as it was); an unwritable folder is one clear error.
func TestRefusals(t *testing.T) {
	srcDir := t.TempDir()
	path, _, _, _ := storageModel(t, srcDir)
	src, _ := exporttest.Decode(t, path)
	m := exporttest.Imported(t, src, srcDir)
	w := perturbed(t, m, 6)
	before := exporttest.Snapshot(t, srcDir)
	protect := []export.Protected{{Path: path, What: "the source model"}}

	// the source model, by another spelling of its path
	other := filepath.Join(srcDir, ".", "data", "..", "model.onnx")
	_, err := export.Merged(src, srcDir, w, other, export.Options{Protect: protect})
	if err == nil || !strings.Contains(err.Error(), "the source model") {
		t.Errorf("overwriting the source: %v", err)
	}
	// through a symbolic link to its folder
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(srcDir, link); err == nil {
		_, err := export.Merged(src, srcDir, w, filepath.Join(link, "model.onnx"), export.Options{Protect: protect})
		if err == nil || !strings.Contains(err.Error(), "the source model") {
			t.Errorf("overwriting the source through a link: %v", err)
		}
	}
	// a source data file as the output
	_, err = export.Merged(src, srcDir, w, filepath.Join(srcDir, "weights.bin"), export.Options{})
	if err == nil || !strings.Contains(err.Error(), "weights.bin") {
		t.Errorf("writing over a data file of the source: %v", err)
	}
	// a source data file named as the output's data file would be
	renamed := proto.Clone(src).(*onnx.ModelProto)
	for _, tp := range renamed.Graph.Initializer {
		for _, kv := range tp.ExternalData {
			if kv.GetValue() == "data/other.bin" {
				kv.Value = proto.String("robust.onnx.data")
			}
		}
	}
	os.Rename(filepath.Join(srcDir, "data", "other.bin"), filepath.Join(srcDir, "robust.onnx.data"))
	_, err = export.Merged(renamed, srcDir, w, filepath.Join(srcDir, "robust.onnx"), export.Options{})
	os.Rename(filepath.Join(srcDir, "robust.onnx.data"), filepath.Join(srcDir, "data", "other.bin"))
	if err == nil || !strings.Contains(err.Error(), "robust.onnx.data") {
		t.Errorf("a source data file named like the output's: %v", err)
	}
	exporttest.SameFiles(t, before, exporttest.Snapshot(t, srcDir))

	// a failed check: the reference is the untuned model
	outDir := t.TempDir()
	out := exporttest.WriteFile(t, filepath.Join(outDir, "robust.onnx"), []byte("the previous export"))
	_, err = export.Merged(src, srcDir, w, out, export.Options{Reference: exporttest.Reference(t, m, nil)})
	if err == nil || !strings.Contains(err.Error(), "check failed") || strings.Contains(err.Error(), "\n") {
		t.Errorf("a failed check: %v", err)
	}
	entries, _ := os.ReadDir(outDir)
	if len(entries) != 1 {
		t.Errorf("a failed check left files: %v", entries)
	}
	if b, _ := os.ReadFile(out); string(b) != "the previous export" {
		t.Errorf("a failed check changed the existing output")
	}

	// read-only and missing folders, a folder as the output
	ro := exporttest.ReadOnlyDir(t)
	for _, out := range []string{filepath.Join(ro, "robust.onnx"), filepath.Join(outDir, "no", "robust.onnx"), outDir} {
		_, err := export.Merged(src, srcDir, w, out, export.Options{})
		if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), filepath.Base(out)) {
			t.Errorf("%s: %v", out, err)
		}
	}
	if entries, _ := os.ReadDir(outDir); len(entries) != 1 {
		t.Errorf("failed exports left files: %v", entries)
	}
}
