// Package exporttest holds what the tests of package export and of the
// hyperat-export command share: the fixture models and their files, a
// workspace with a fake tuning result, logits computed by us and by
// onnxruntime, and snapshots of folders. Only tests import it.
package exporttest

import (
	"bytes"
	"encoding/binary"
	"math"
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
	"github.com/hyperat/hyperat/workspace"
)

// The fixture models the tests use most.
const (
	TVModel = "tv_vit_op14.onnx" // Gemm transB heads and projections, MatMul [in,out] weights
	HFModel = "hf_vit_op16.onnx" // q, k, v apart
)

// Fixture is the path of a fixture model.
func Fixture(name string) string { return testutil.Fixture("models", name) }

// Decode reads a model file as a proto, with its bytes.
func Decode(t testing.TB, path string) (*onnx.ModelProto, []byte) {
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

// Encode serializes a proto deterministically.
func Encode(t testing.TB, m proto.Message) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// WriteFile writes data to path and returns path.
func WriteFile(t testing.TB, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Floats reads little-endian float32s.
func Floats(b []byte) []float32 {
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out
}

// Imported imports a proto whose external data lies in dir.
func Imported(t testing.TB, m *onnx.ModelProto, dir string) *onnximport.Model {
	t.Helper()
	im, err := onnximport.Import(m, dir)
	if err != nil {
		t.Fatal(err)
	}
	return im
}

// Targets are the layers tuning would adapt, and the head.
func Targets(t testing.TB, m *onnximport.Model) []*layers.Linear {
	t.Helper()
	rep, err := layers.Recognize(m.Graph)
	if err != nil {
		t.Fatal(err)
	}
	return rep.Targets()
}

// Pixels are seeded random images in [0, 1].
func Pixels(c *model.Classifier, batch int, seed uint64) *graph.Tensor {
	rng := rand.New(rand.NewPCG(seed, 3))
	x := graph.NewTensor(graph.Float32, append([]int{batch}, c.InputShape()...))
	for i := range x.F {
		x.F[i] = rng.Float32()
	}
	return x
}

// Logits runs a classifier.
func Logits(t testing.TB, c *model.Classifier, x *graph.Tensor) *graph.Tensor {
	t.Helper()
	y, err := c.Logits(x)
	if err != nil {
		t.Fatal(err)
	}
	return y
}

// LoadClassifier loads a model file as a classifier.
func LoadClassifier(t testing.TB, path string) *model.Classifier {
	t.Helper()
	c, err := model.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Reference is the imported model with some weights replaced, in memory.
func Reference(t testing.TB, m *onnximport.Model, w map[layers.WeightKey]*graph.Tensor) *model.Classifier {
	t.Helper()
	c, err := hyperat.WithWeights(m, m.Graph, w)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// ORTLogits runs a model file in onnxruntime (fixtures/ort/run.mjs). It
// skips when node or onnxruntime-node is missing, unless HYPERAT_REQUIRE_ORT=1.
func ORTLogits(t testing.TB, modelPath string, x *graph.Tensor) *graph.Tensor {
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

// CompareModels checks that got is src with the initializers named in w
// holding w's values, in the same form, and nothing else changed.
func CompareModels(t testing.TB, src, got *onnx.ModelProto, w map[layers.WeightKey]*graph.Tensor) {
	t.Helper()
	sg, gg := src.GetGraph(), got.GetGraph()
	if len(sg.Node) != len(gg.Node) {
		t.Fatalf("%d nodes, want %d", len(gg.Node), len(sg.Node))
	}
	for i := range sg.Node {
		if !bytes.Equal(Encode(t, sg.Node[i]), Encode(t, gg.Node[i])) {
			t.Fatalf("node %d (%s) changed", i, sg.Node[i].GetName())
		}
	}
	if len(sg.Initializer) != len(gg.Initializer) {
		t.Fatalf("%d initializers, want %d", len(gg.Initializer), len(sg.Initializer))
	}
	for i, a := range sg.Initializer {
		b := gg.Initializer[i]
		nw, replaced := w[layers.WeightKey{Init: a.GetName()}]
		if !replaced {
			if a.GetDataLocation() == onnx.TensorProto_EXTERNAL {
				// external data moves to the output's data file (where
				// the export tests check its bytes); the rest stays
				ac, bc := proto.Clone(a).(*onnx.TensorProto), proto.Clone(b).(*onnx.TensorProto)
				ac.ExternalData, bc.ExternalData = nil, nil
				a, b = ac, bc
			}
			if !bytes.Equal(Encode(t, a), Encode(t, b)) {
				t.Errorf("initializer %s changed", a.GetName())
			}
			continue
		}
		if (a.RawData != nil) != (b.RawData != nil) || len(a.FloatData) > 0 != (len(b.FloatData) > 0) ||
			a.GetDataLocation() != b.GetDataLocation() {
			t.Errorf("initializer %s changed form", a.GetName())
		}
		if a.GetDataLocation() != onnx.TensorProto_EXTERNAL {
			vals := b.FloatData
			if b.RawData != nil {
				vals = Floats(b.RawData)
			}
			if testutil.MaxAbsDiff(vals, nw.F) != 0 {
				t.Errorf("initializer %s does not hold the new weights", a.GetName())
			}
		}
		ac, bc := proto.Clone(a).(*onnx.TensorProto), proto.Clone(b).(*onnx.TensorProto)
		for _, c := range []*onnx.TensorProto{ac, bc} {
			c.RawData, c.FloatData, c.ExternalData = nil, nil, nil
		}
		if !proto.Equal(ac, bc) {
			t.Errorf("initializer %s: a field besides its data changed", a.GetName())
		}
	}
	// everything but the nodes and initializers
	sc, gc := proto.Clone(src).(*onnx.ModelProto), proto.Clone(got).(*onnx.ModelProto)
	for _, c := range []*onnx.ModelProto{sc, gc} {
		c.Graph.Node, c.Graph.Initializer = nil, nil
	}
	if !bytes.Equal(Encode(t, sc), Encode(t, gc)) {
		t.Errorf("the model outside its nodes and initializers changed")
	}
	if d := got.GetGraph().GetInput()[0].GetType().GetTensorType().GetShape().GetDim()[0]; d.GetDimParam() == "" {
		t.Errorf("the batch dim is no longer symbolic: %v", d)
	}
}

// SharedModel edits the hf fixture so that the key projection of block 0
// reads the query's weight: one initializer, two layers. It writes the model
// into dir and returns its path and the shared initializer's name.
func SharedModel(t testing.TB, dir string) (path, shared string) {
	t.Helper()
	src, _ := Decode(t, Fixture(HFModel))
	m := Imported(t, src, filepath.Dir(Fixture(HFModel)))
	var q, k *layers.Linear
	for _, l := range Targets(t, m) {
		if l.Block == 0 && l.Kind == layers.KindQ {
			q = l
		}
		if l.Block == 0 && l.Kind == layers.KindK {
			k = l
		}
	}
	for _, n := range src.Graph.Node {
		if n.GetName() == k.Node.Name {
			n.Input[1] = q.Weight.Name
		}
	}
	var inits []*onnx.TensorProto
	for _, tp := range src.Graph.Initializer {
		if tp.GetName() != k.Weight.Name {
			inits = append(inits, tp)
		}
	}
	src.Graph.Initializer = inits
	return WriteFile(t, filepath.Join(dir, "shared.onnx"), Encode(t, src)), q.Weight.Name
}

// Tuning is a fake tuning result with large LoRAs, written in a workspace,
// and the merged weights computed here independently of the export package.
type Tuning struct {
	Res     hyperat.Result
	Weights map[layers.WeightKey]*graph.Tensor
	LoRA    map[string]*graph.Tensor // the factors, as adapters.safetensors names them
	Head    *layers.Linear
}

// NewWorkspace imports a model file into a workspace at dir.
func NewWorkspace(t testing.TB, modelPath, dir string) (*workspace.Workspace, *onnximport.Model) {
	t.Helper()
	sum, size, err := workspace.SumFile(modelPath)
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
	ws, err := workspace.New(modelPath, sum, size, m, rep)
	if err != nil {
		t.Fatal(err)
	}
	if err := workspace.Write(dir, ws, modelPath, false); err != nil {
		t.Fatal(err)
	}
	return ws, m
}

// FakeTuning writes a tuning result into the workspace at dir: three
// defenses with LoRAs of rank 2 (alpha 4) on every block layer, merge weights
// 0.5 0.3 0.2, and a changed head.
func FakeTuning(t testing.TB, dir string, ws *workspace.Workspace, m *onnximport.Model, seed uint64) *Tuning {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 17))
	cfg := hyperat.DefaultConfig()
	cfg.Rank, cfg.Alpha = 2, 4
	tu := &Tuning{Weights: map[layers.WeightKey]*graph.Tensor{}, LoRA: map[string]*graph.Tensor{}}
	tu.Res = hyperat.Result{ModelSHA256: ws.Source.SHA256, Config: cfg,
		Lambda: []float64{0.5, 0.3, 0.2}, Scale: cfg.Alpha / float64(cfg.Rank)}
	for _, l := range Targets(t, m) {
		if l.Kind == layers.KindHead {
			tu.Head = l
			continue
		}
		tu.Res.Targets = append(tu.Res.Targets, lora.Layer{Name: l.Name, Kind: l.Kind, Block: l.Block,
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
		for _, tg := range tu.Res.Targets {
			a, b := randn(cfg.Rank, tg.In), randn(tg.Out, cfg.Rank)
			tu.LoRA[d+"/"+tg.Name+".lora_A.weight"] = a
			tu.LoRA[d+"/"+tg.Name+".lora_B.weight"] = b
			w := tu.Weights[tg.Key]
			if w == nil {
				w = m.Graph.ParamByName(tg.Key.Init).Const.Clone()
				tu.Weights[tg.Key] = w
			}
			AddDelta(w, tg, a, b, float32(tu.Res.Lambda[di]*tu.Res.Scale))
		}
	}
	if tu.Head != nil {
		w := tu.Head.Weight.Const.Clone()
		for i := range w.F {
			w.F[i] += float32(0.05 * rng.NormFloat64())
		}
		tu.Weights[tu.Head.Key] = w
		if tu.Head.Bias != nil {
			b := tu.Head.Bias.Const.Clone()
			for i := range b.F {
				b.F[i] += 0.1
			}
			tu.Weights[layers.WeightKey{Init: tu.Head.Bias.Name}] = b
		}
	}
	if err := workspace.WriteResult(dir, &hyperat.Tuned{Result: tu.Res, Weights: tu.Weights, Adapters: tu.LoRA}); err != nil {
		t.Fatal(err)
	}
	return tu
}

// AddDelta adds s·B·A [out, in] to w in the target's layout.
func AddDelta(w *graph.Tensor, tg lora.Layer, a, b *graph.Tensor, s float32) {
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

// ByName keys weights by their text form, as weights.safetensors does.
func ByName(w map[layers.WeightKey]*graph.Tensor) map[string]*graph.Tensor {
	out := map[string]*graph.Tensor{}
	for k, v := range w {
		out[k.String()] = v
	}
	return out
}

// Snapshot reads every file under dir.
func Snapshot(t testing.TB, dir string) map[string]string {
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

// SameFiles checks that two snapshots hold the same files and contents.
func SameFiles(t testing.TB, before, after map[string]string) {
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

// ReadOnlyDir returns a folder this process cannot write in, or skips.
func ReadOnlyDir(t testing.TB) string {
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
