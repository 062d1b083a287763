package export_test

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/hyperat"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/layers"
	"github.com/hyperat/hyperat/lora"
	"github.com/hyperat/hyperat/model"
	"github.com/hyperat/hyperat/npy"
	"github.com/hyperat/hyperat/onnx"
	"github.com/hyperat/hyperat/safetensors"
	"github.com/hyperat/hyperat/workspace"
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

const tvModel = "tv_vit_op14.onnx" // Gemm transB heads and projections, MatMul [in,out] weights
const hfModel = "hf_vit_op16.onnx" // q, k, v apart

func fixture(name string) string { return testutil.Fixture("models", name) }

// decode reads a model file as a proto.
func decode(t *testing.T, path string) (*onnx.ModelProto, []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnximport.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	return m, data
}

func encode(t *testing.T, m *onnx.ModelProto) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// imported imports a proto whose external data lies in dir.
func imported(t *testing.T, m *onnx.ModelProto, dir string) *onnximport.Model {
	t.Helper()
	im, err := onnximport.Import(m, dir)
	if err != nil {
		t.Fatal(err)
	}
	return im
}

func targets(t *testing.T, m *onnximport.Model) []*layers.Linear {
	t.Helper()
	rep, err := layers.Recognize(m.Graph)
	if err != nil {
		t.Fatal(err)
	}
	return rep.Targets()
}

// perturbed returns new values for the weights of every recognized layer
// (the head included), each initializer once: W + 0.05 N(0, 1).
func perturbed(t *testing.T, m *onnximport.Model, seed uint64) map[layers.WeightKey]*graph.Tensor {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 11))
	w := map[layers.WeightKey]*graph.Tensor{}
	for _, l := range targets(t, m) {
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

// pixels are seeded random images in [0, 1].
func pixels(c *model.Classifier, batch int, seed uint64) *graph.Tensor {
	rng := rand.New(rand.NewPCG(seed, 3))
	x := graph.NewTensor(graph.Float32, append([]int{batch}, c.InputShape()...))
	for i := range x.F {
		x.F[i] = rng.Float32()
	}
	return x
}

func logits(t *testing.T, c *model.Classifier, x *graph.Tensor) *graph.Tensor {
	t.Helper()
	y, err := c.Logits(x)
	if err != nil {
		t.Fatal(err)
	}
	return y
}

func loadClassifier(t *testing.T, path string) *model.Classifier {
	t.Helper()
	c, err := model.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func reference(t *testing.T, m *onnximport.Model, w map[layers.WeightKey]*graph.Tensor) *model.Classifier {
	t.Helper()
	c, err := hyperat.WithWeights(m, m.Graph, w)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ortLogits runs a model file in onnxruntime (fixtures/ort/run.mjs). It
// skips when node or onnxruntime-node is missing, unless HYPERAT_REQUIRE_ORT=1.
func ortLogits(t *testing.T, modelPath string, x *graph.Tensor) *graph.Tensor {
	t.Helper()
	runner := testutil.Fixture("ort", "run.mjs")
	_, errNode := exec.LookPath("node")
	_, errORT := os.Stat(testutil.Fixture("ort", "node_modules", "onnxruntime-node"))
	if errNode != nil || errORT != nil {
		msg := "onnxruntime is not installed (node and `cd fixtures/ort && npm ci --ignore-scripts`)"
		if os.Getenv("HYPERAT_REQUIRE_ORT") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir := t.TempDir()
	in, out := filepath.Join(dir, "x.npy"), filepath.Join(dir, "y.npy")
	if err := npy.WriteFile(in, x); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("node", runner, modelPath, in, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("onnxruntime on %s: %v\n%s", modelPath, err, b)
	}
	y, err := npy.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return y
}

// tuning is a fake tuning result with large LoRAs, written with hyperat's
// file names and types, and the merged weights computed here independently
// of the export package.
type tuning struct {
	res     hyperat.Result
	weights map[layers.WeightKey]*graph.Tensor
	lora    map[string]*graph.Tensor
	head    *layers.Linear
}

// newWorkspace imports a model file into a workspace at dir.
func newWorkspace(t *testing.T, modelPath, dir string) (*workspace.Workspace, *onnximport.Model) {
	t.Helper()
	data, err := os.ReadFile(modelPath)
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnximport.Load(modelPath)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := layers.Recognize(m.Graph)
	if err != nil {
		t.Fatal(err)
	}
	ws, err := workspace.New(modelPath, data, m, rep)
	if err != nil {
		t.Fatal(err)
	}
	if err := workspace.Write(dir, ws, data, filepath.Dir(modelPath), false); err != nil {
		t.Fatal(err)
	}
	return ws, m
}

// fakeTuning writes a tuning result into the workspace at dir: three
// defenses with LoRAs of rank 2 (alpha 4) on every block layer, merge weights
// 0.5 0.3 0.2, and a changed head.
func fakeTuning(t *testing.T, dir string, ws *workspace.Workspace, m *onnximport.Model, seed uint64) *tuning {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 17))
	cfg := hyperat.DefaultConfig()
	cfg.Rank, cfg.Alpha = 2, 4
	tu := &tuning{weights: map[layers.WeightKey]*graph.Tensor{}, lora: map[string]*graph.Tensor{}}
	tu.res = hyperat.Result{Version: 1, ModelSHA256: ws.Source.SHA256, Config: cfg,
		Lambda: []float64{0.5, 0.3, 0.2}, Scale: cfg.Alpha / float64(cfg.Rank)}
	for _, l := range targets(t, m) {
		if l.Kind == layers.KindHead {
			tu.head = l
			continue
		}
		tu.res.Targets = append(tu.res.Targets, lora.Layer{Name: l.Name, Kind: l.Kind, Block: l.Block,
			In: l.In, Out: l.Out, Key: layers.WeightKey{Init: l.Weight.Name}, Transposed: l.Transposed})
	}
	randn := func(shape ...int) *graph.Tensor {
		x := graph.NewTensor(graph.Float32, shape)
		for i := range x.F {
			x.F[i] = float32(0.1 * rng.NormFloat64())
		}
		return x
	}
	for di, d := range cfg.Defenses {
		for _, tg := range tu.res.Targets {
			a, b := randn(cfg.Rank, tg.In), randn(tg.Out, cfg.Rank)
			tu.lora[d+"/"+tg.Name+".lora_A.weight"] = a
			tu.lora[d+"/"+tg.Name+".lora_B.weight"] = b
			w := tu.weights[tg.Key]
			if w == nil {
				w = m.Graph.ParamByName(tg.Key.Init).Const.Clone()
				tu.weights[tg.Key] = w
			}
			addDelta(w, tg, a, b, float32(tu.res.Lambda[di]*tu.res.Scale))
		}
	}
	if tu.head != nil {
		w := tu.head.Weight.Const.Clone()
		for i := range w.F {
			w.F[i] += float32(0.05 * rng.NormFloat64())
		}
		tu.weights[tu.head.Key] = w
		if tu.head.Bias != nil {
			b := tu.head.Bias.Const.Clone()
			for i := range b.F {
				b.F[i] += 0.1
			}
			tu.weights[layers.WeightKey{Init: tu.head.Bias.Name}] = b
		}
	}
	td := filepath.Join(dir, hyperat.ResultDir)
	if err := os.MkdirAll(td, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := safetensors.WriteFile(filepath.Join(td, hyperat.WeightsFile), byName(tu.weights), nil); err != nil {
		t.Fatal(err)
	}
	if err := safetensors.WriteFile(filepath.Join(td, hyperat.AdaptersFile), tu.lora, nil); err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(tu.res)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(td, hyperat.ResultFile), js)
	return tu
}

// addDelta adds s·B·A [out, in] to w in the target's layout.
func addDelta(w *graph.Tensor, tg lora.Layer, a, b *graph.Tensor, s float32) {
	r := a.Shape[0]
	for o := 0; o < tg.Out; o++ {
		for j := 0; j < tg.In; j++ {
			var d float32
			for k := 0; k < r; k++ {
				d += b.F[o*r+k] * a.F[k*tg.In+j]
			}
			if tg.Transposed {
				w.F[o*tg.In+j] += s * d
			} else {
				w.F[j*tg.Out+o] += s * d
			}
		}
	}
}

// byName keys weights by their text form, as weights.safetensors does.
func byName(w map[layers.WeightKey]*graph.Tensor) map[string]*graph.Tensor {
	out := map[string]*graph.Tensor{}
	for k, v := range w {
		out[k.String()] = v
	}
	return out
}

// snapshot reads every file under dir.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			files[p] = string(b)
		}
		return nil
	})
	return files
}

func sameFiles(t *testing.T, before, after map[string]string) {
	t.Helper()
	if len(before) != len(after) {
		var extra []string
		for p := range after {
			if _, ok := before[p]; !ok {
				extra = append(extra, p)
			}
		}
		t.Errorf("files changed: %d before, %d after (new: %v)", len(before), len(after), extra)
	}
	for p, b := range before {
		if after[p] != b {
			t.Errorf("%s changed", p)
		}
	}
}

// readOnlyDir returns a folder this process cannot write in, or skips.
func readOnlyDir(t *testing.T) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(d, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(d, 0o755) })
	if probe(d) {
		return d
	}
	if probe("/sys") { // root writes anywhere; /sys is mounted read-only
		return "/sys"
	}
	t.Skip("no read-only folder: this process writes everywhere")
	return ""
}

// probe reports whether dir refuses a new file.
func probe(dir string) bool {
	f, err := os.CreateTemp(dir, "probe")
	if err != nil {
		return true
	}
	f.Close()
	os.Remove(f.Name())
	return false
}
