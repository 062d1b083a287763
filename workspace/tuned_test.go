package workspace

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/hyperat"
	"github.com/hyperat/hyperat/layers"
	"github.com/hyperat/hyperat/lora"
)

// oldResult is result.json as earlier versions of hyperat-tune wrote it: it
// must still read.
const oldResult = `{
  "version": 1,
  "model_sha256": "ab",
  "config": {"Method": "lora", "Defenses": ["pgdat"], "Rank": 2, "Alpha": 4},
  "lambda": [1],
  "scale": 2,
  "targets": [{"name": "blocks.0.mlp.fc1", "kind": "fc1", "block": 0, "in": 3, "out": 2, "key": "w1"}],
  "table": [{"name": "lora pgdat", "clean": 0.5, "robust": 0.25}],
  "collapsed": false
}
`

func TestResult(t *testing.T) {
	dir := t.TempDir()
	w := map[layers.WeightKey]*graph.Tensor{
		{Init: "w1"}:                   graph.F32([]int{3, 2}, []float32{1, 2, 3, 4, 5, 6}),
		{Init: "b", Reader: "fc2_out"}: graph.F32([]int{2}, []float32{7, 8}),
	}
	ad := map[string]*graph.Tensor{"pgdat/blocks.0.mlp.fc1.lora_A.weight": graph.F32([]int{2, 3}, make([]float32, 6))}
	res := hyperat.Result{ModelSHA256: "ab", Lambda: []float64{1}, Scale: 2, Table: []hyperat.ResultRow{{Name: "x", Clean: 0.5}},
		Targets: []lora.Layer{{Name: "blocks.0.mlp.fc1", Kind: "fc1", In: 3, Out: 2, Key: layers.WeightKey{Init: "w1"}}}}
	res.Config.Method, res.Config.Defenses = "lora", []string{"pgdat"}
	if err := WriteResult(dir, &hyperat.Tuned{Result: res, Weights: w, Adapters: ad}); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, ResultDir, ResultFile))
	if err != nil || !strings.HasPrefix(string(b), "{\n  \"version\": 1,\n  \"model_sha256\": \"ab\",") {
		t.Errorf("result.json starts %.60q (%v)", b, err)
	}
	got, gw, err := ReadResult(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, res) || !reflect.DeepEqual(gw, w) {
		t.Errorf("read back %+v %v, want %+v %v", *got, gw, res, w)
	}
	if gad, err := ReadAdapters(dir); err != nil || !reflect.DeepEqual(gad, ad) {
		t.Errorf("adapters %v (%v)", gad, err)
	}

	// the format of earlier versions
	if err := os.WriteFile(filepath.Join(dir, ResultDir, ResultFile), []byte(oldResult), 0o644); err != nil {
		t.Fatal(err)
	}
	got, _, err = ReadResult(dir)
	if err != nil || got.Config.Method != "lora" || got.Targets[0].Key.Init != "w1" || got.Table[0].Robust != 0.25 {
		t.Errorf("an earlier result.json: %+v, %v", got, err)
	}

	// damaged files
	var fields map[string]any
	json.Unmarshal([]byte(oldResult), &fields)
	fields["version"] = 2
	b, _ = json.Marshal(fields)
	for _, body := range [][]byte{[]byte("{"), b} {
		os.WriteFile(filepath.Join(dir, ResultDir, ResultFile), body, 0o644)
		if _, _, err := ReadResult(dir); err == nil || err.Error() != filepath.Join(dir, ResultDir, ResultFile)+": damaged or unknown tuning result" {
			t.Errorf("%.20s: %v", body, err)
		}
	}
	os.WriteFile(filepath.Join(dir, ResultDir, AdaptersFile), []byte("short"), 0o644)
	if _, err := ReadAdapters(dir); err == nil || !strings.HasPrefix(err.Error(), filepath.Join(dir, ResultDir, AdaptersFile)+": ") {
		t.Errorf("damaged adapters: %v", err)
	}
	os.Remove(filepath.Join(dir, ResultDir, AdaptersFile))
	if _, err := ReadAdapters(dir); err == nil || err.Error() != filepath.Join(dir, ResultDir, AdaptersFile)+": no such file or directory" {
		t.Errorf("missing adapters: %v", err)
	}
	if _, _, err := ReadResult(t.TempDir()); err == nil || !strings.Contains(err.Error(), "has no tuning result; run hyperat-tune first") {
		t.Errorf("no result: %v", err)
	}
}
