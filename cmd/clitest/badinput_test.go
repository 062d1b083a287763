package clitest

// Bad inputs of docs/BAD_INPUT.md that no other test covers: models that are
// not image classifiers or hold non-finite weights, non-finite images, bad
// tuning inputs, a workspace of another model, and the eps syntax shared by
// the commands.

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/npy"
	"github.com/hyperat/hyperat/onnx"
	"github.com/hyperat/hyperat/workspace"
)

// noWorkspace checks that a failed import left no workspace behind.
func noWorkspace(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, workspace.ManifestFile)); err == nil {
		t.Errorf("a refused import wrote %s", filepath.Join(dir, workspace.ManifestFile))
	}
}

// mlpModel is a small image model without attention: x [N,1,4,4] ->
// Flatten -> MatMul [16,3] -> Add -> logits [N,3].
func mlpModel() *onnx.ModelProto {
	f := int32(onnx.TensorProto_FLOAT)
	dim := func(n int64) *onnx.TensorShapeProto_Dimension {
		return &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: n}}
	}
	batch := &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimParam{DimParam: "batch"}}
	vi := func(name string, dims ...*onnx.TensorShapeProto_Dimension) *onnx.ValueInfoProto {
		return &onnx.ValueInfoProto{Name: proto.String(name), Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{
			TensorType: &onnx.TypeProto_Tensor{ElemType: &f, Shape: &onnx.TensorShapeProto{Dim: dims}}}}}
	}
	w := make([]float32, 16*3)
	for i := range w {
		w[i] = float32(i%7) / 7
	}
	node := func(op, name string, in, out []string) *onnx.NodeProto {
		return &onnx.NodeProto{OpType: proto.String(op), Name: proto.String(name), Input: in, Output: out}
	}
	return &onnx.ModelProto{IrVersion: proto.Int64(8), ProducerName: proto.String("test"),
		OpsetImport: []*onnx.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(17)}},
		Graph: &onnx.GraphProto{Name: proto.String("mlp"),
			Node: []*onnx.NodeProto{
				node("Flatten", "flatten", []string{"input"}, []string{"flat"}),
				node("MatMul", "fc", []string{"flat", "fc.weight"}, []string{"fc_out"}),
				node("Add", "fc_bias", []string{"fc_out", "fc.bias"}, []string{"logits"}),
			},
			Initializer: []*onnx.TensorProto{
				{Name: proto.String("fc.weight"), DataType: &f, Dims: []int64{16, 3}, FloatData: w},
				{Name: proto.String("fc.bias"), DataType: &f, Dims: []int64{3}, FloatData: []float32{0, 0, 0}},
			},
			Input:  []*onnx.ValueInfoProto{vi("input", batch, dim(1), dim(4), dim(4))},
			Output: []*onnx.ValueInfoProto{vi("logits", batch, dim(3))},
		}}
}

// A model that is not an image classifier is refused by hyperat-import with
// one line, and no workspace is made: no attention, two inputs, an input that
// is not [N, C, H, W], a first output that is not logits.
func TestImportNotAClassifier(t *testing.T) {
	_, data := model(t)
	dir := t.TempDir()
	mlp, err := proto.Marshal(mlpModel())
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path string
		want       []string
	}{
		{"no attention", write(t, filepath.Join(dir, "mlp.onnx"), mlp), []string{"mlp.onnx", "no transformer block"}},
		{"two inputs", edit(t, data, dir, "two.onnx", func(m *onnx.ModelProto) {
			in := proto.Clone(m.Graph.Input[0]).(*onnx.ValueInfoProto)
			in.Name = proto.String("mask")
			m.Graph.Input = append(m.Graph.Input, in)
		}), []string{"two.onnx", "2 inputs"}},
		{"tokens as input", edit(t, data, dir, "tokens.onnx", func(m *onnx.ModelProto) {
			sh := m.Graph.Input[0].GetType().GetTensorType().GetShape()
			sh.Dim = sh.Dim[:3]
		}), []string{"tokens.onnx", "not an image classifier", "[N, C, H, W]"}},
		{"features as output", edit(t, data, dir, "features.onnx", func(m *onnx.ModelProto) {
			for _, n := range m.Graph.Node {
				if n.GetOpType() == "MatMul" { // the first block's qkv: [N, tokens, 3*width]
					m.Graph.Output[0].Name = proto.String(n.Output[0])
					m.Graph.Output[0].Type = nil
					return
				}
			}
			t.Fatal("no MatMul in the fixture")
		}), []string{"features.onnx", "not an image classifier", "logits"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ws := filepath.Join(dir, "ws-"+strings.ReplaceAll(c.name, " ", "-"))
			fails(t, hyperat(t, dir, "hyperat-import", c.path, "--workspace", ws), 1, c.want...)
			noWorkspace(t, ws)
		})
	}
}

// setFloat writes v at index i of a float initializer stored as raw data.
func setFloat(t *testing.T, m *onnx.ModelProto, name string, i int, v float32) {
	t.Helper()
	for _, tp := range m.Graph.Initializer {
		if tp.GetName() == name {
			if len(tp.RawData) < 4*(i+1) {
				t.Fatalf("initializer %s has no raw value %d", name, i)
			}
			binary.LittleEndian.PutUint32(tp.RawData[4*i:], math.Float32bits(v))
			return
		}
	}
	t.Fatalf("no initializer %s in the fixture", name)
}

// Non-finite weights are refused at import: NaN in any initializer and an
// infinity in a linear layer, by name; an infinity elsewhere that makes the
// logits non-finite, by its effect. The workspace is not written.
func TestImportNonFiniteWeights(t *testing.T) {
	_, data := model(t)
	dir := t.TempDir()
	for _, c := range []struct {
		name, init string
		v          float32
		want       []string
	}{
		{"nan-layernorm", "encoder.layers.encoder_layer_0.ln_1.weight", float32(math.NaN()), []string{"encoder.layers.encoder_layer_0.ln_1.weight", "NaN"}},
		{"inf-head", "heads.head.weight", float32(math.Inf(1)), []string{"heads.head.weight", "infinite"}},
		{"inf-position", "encoder.pos_embedding", float32(math.Inf(-1)), []string{"logits", "NaN or infinite"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := edit(t, data, dir, c.name+".onnx", func(m *onnx.ModelProto) { setFloat(t, m, c.init, 3, c.v) })
			ws := filepath.Join(dir, "ws-"+c.name)
			fails(t, hyperat(t, dir, "hyperat-import", p, "--workspace", ws), 1, append([]string{c.name + ".onnx"}, c.want...)...)
			noWorkspace(t, ws)
		})
	}
}

// hyperat-eval refuses images with NaN or infinite values, and images whose
// channel count differs from the model's, before it runs the model; the
// logits file is not touched.
func TestEvalNonFiniteInput(t *testing.T) {
	path, _ := model(t)
	dir := t.TempDir()
	out := write(t, filepath.Join(dir, "y.npy"), []byte("keep me"))
	for _, c := range []struct {
		name  string
		shape []int
		bad   int
		v     float32
		want  []string
	}{
		{"nan", []int{2, 3, 32, 32}, 3*32*32 + 5, float32(math.NaN()), []string{"nan.npy", "value 3077 (sample 1)", "NaN", "finite"}},
		{"inf", []int{2, 3, 32, 32}, 7, float32(math.Inf(-1)), []string{"inf.npy", "sample 0", "-Inf", "finite"}},
		{"gray", []int{2, 1, 32, 32}, -1, 0, []string{"gray.npy", "[2,1,32,32]", "dim 1 is 1, want 3"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			x := graph.NewTensor(graph.Float32, c.shape)
			for i := range x.F {
				x.F[i] = 0.5
			}
			if c.bad >= 0 {
				x.F[c.bad] = c.v
			}
			in := filepath.Join(dir, c.name+".npy")
			if err := npy.WriteFile(in, x); err != nil {
				t.Fatal(err)
			}
			fails(t, hyperat(t, dir, "hyperat-eval", path, "--input", in, "--logits", out), 1, c.want...)
			if b, _ := os.ReadFile(out); string(b) != "keep me" {
				t.Errorf("the logits file changed")
			}
		})
	}
}

// idxFile writes an uncompressed IDX file of unsigned bytes.
func idxFile(t *testing.T, path string, dims []int, data []byte) {
	t.Helper()
	b := []byte{0, 0, 8, byte(len(dims))}
	for _, d := range dims {
		b = binary.BigEndian.AppendUint32(b, uint32(d))
	}
	write(t, path, append(b, data...))
}

// hyperat-tune refuses bad data, bad flags and a missing workspace with one
// line and the right status, and leaves the workspace as it was.
func TestTuneBadInputs(t *testing.T) {
	dir := t.TempDir()
	importTo(t, dir, "ws") // hf_vit: [N,1,28,28], 10 classes
	before := snapshot(t, filepath.Join(dir, "ws"))

	// an MNIST-like dataset whose labels reach 12: more classes than outputs
	labels := filepath.Join(dir, "labels12")
	os.Mkdir(labels, 0o755)
	idxFile(t, filepath.Join(labels, "train-images-idx3-ubyte"), []int{20, 28, 28}, make([]byte, 20*28*28))
	lab := make([]byte, 20)
	lab[7] = 12
	idxFile(t, filepath.Join(labels, "train-labels-idx1-ubyte"), []int{20}, lab)
	// a truncated one
	trunc := filepath.Join(dir, "truncated")
	os.Mkdir(trunc, 0o755)
	idxFile(t, filepath.Join(trunc, "train-images-idx3-ubyte"), []int{20, 28, 28}, make([]byte, 20*28*28-5))
	idxFile(t, filepath.Join(trunc, "train-labels-idx1-ubyte"), []int{20}, make([]byte, 20))
	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o755)
	mnist := testutil.Fixture("mnist")

	base := func(args ...string) []string { return append([]string{"--workspace", "ws"}, args...) }
	for _, c := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"no workspace", []string{"--workspace", "nope", "--data", mnist}, 1, []string{"nope", "not a hyperat workspace", "hyperat-import"}},
		{"missing data", base("--data", "no-such-data"), 1, []string{"no-such-data", "no such file"}},
		{"data is a file", base("--data", filepath.Join(trunc, "train-labels-idx1-ubyte")), 1, []string{"is a file, not a folder"}},
		{"no dataset", base("--data", empty), 1, []string{empty, "no dataset found"}},
		{"truncated dataset", base("--data", trunc), 1, []string{"train-images-idx3-ubyte", "bytes after the header"}},
		{"labels out of range", base("--data", labels), 1, []string{labels, "13 classes", "outputs 10"}},
		{"no data flag", base(), 2, []string{"--data"}},
		{"resume without a run", base("--data", mnist, "--resume"), 1, []string{"no run to resume"}},
		{"resume and force", base("--data", mnist, "--resume", "--force"), 2, []string{"--resume", "--force"}},
		{"unknown method", base("--data", mnist, "--method", "sgd"), 2, []string{"--method", "sgd"}},
		{"unknown defense", base("--data", mnist, "--defenses", "pgdat,fgsm"), 2, []string{"--defenses", "fgsm"}},
		{"unknown merge", base("--data", mnist, "--merge", "mean"), 2, []string{"--merge", "mean"}},
		{"zero iterations", base("--data", mnist, "--iters", "0"), 2, []string{"--iters"}},
		{"zero validation steps", base("--data", mnist, "--val-steps", "0"), 2, []string{"--val-steps"}},
		{"negative eval-every", base("--data", mnist, "--eval-every", "-1"), 2, []string{"--eval-every"}},
		{"negative checkpoint-every", base("--data", mnist, "--checkpoint-every", "-2"), 2, []string{"--checkpoint-every"}},
		{"validation larger than the data", base("--data", mnist, "--val", "100000"), 2, []string{"--val"}},
		{"stray argument", base("--data", mnist, "vit.onnx"), 2, []string{"vit.onnx"}},
		{"bad memory size", base("--data", mnist, "--max-memory", "12X"), 2, []string{"--max-memory", "12X"}},
		{"memory too small for one image", base("--data", mnist, "--max-memory", "1M", "--force"), 1, []string{"1.0 MiB", "one image per micro-batch", "--max-memory"}},
		{"unknown layer kind", base("--data", mnist, "--targets", "qkv,fc"), 1, []string{"--targets", `"fc"`, "q, k, v, proj, fc1, fc2"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			fails(t, hyperat(t, dir, "hyperat-tune", c.args...), c.code, c.want...)
			sameFiles(t, before, snapshot(t, filepath.Join(dir, "ws")))
		})
	}
}

// --eps takes a decimal or a fraction in (0, 1] in hyperat-tune and
// hyperat-eval alike; anything else is a command-line mistake (status 2)
// naming --eps, and nothing is read or written.
func TestEpsSyntax(t *testing.T) {
	dir := t.TempDir()
	mnist := testutil.Fixture("mnist")
	m := testutil.Fixture("models", "hf_vit_op16.onnx")
	run := func(cmd, eps string) result {
		if cmd == "hyperat-tune" {
			return hyperat(t, dir, cmd, "--workspace", "nope", "--data", mnist, "--eps", eps)
		}
		return hyperat(t, dir, cmd, m, "--data", filepath.Join(dir, "nodata"), "--eps", eps)
	}
	for _, cmd := range []string{"hyperat-tune", "hyperat-eval"} {
		for _, eps := range []string{"0.1", "8/255", " 4 / 255 ", "1", "1/1"} {
			// accepted: the run goes on and fails later, on the missing workspace or data
			r := run(cmd, eps)
			fails(t, r, 1)
			if strings.Contains(r.stderr, "--eps") {
				t.Errorf("%s --eps %q refused:\n%s", cmd, eps, r)
			}
		}
		for _, eps := range []string{"0", "-0.1", "1.5", "2/1", "0/255", "8/0", "nan", "inf", "-inf/2", "abc", "", "8/255/2", "1e-400"} {
			fails(t, run(cmd, eps), 2, "--eps")
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("a refused run wrote %v", entries)
	}
}

// A workspace imported again from another model keeps the old run's files;
// hyperat-tune and hyperat-export refuse them with one line, whether the run is
// continued or not, and change nothing. A model copy changed behind the
// workspace's back is refused too.
func TestWorkspaceOfAnotherModel(t *testing.T) {
	dir := t.TempDir()
	importTo(t, dir, "ws")
	args := append(tuneArgs("ws"), "--iters", "2")
	if r := hyperat(t, dir, "hyperat-tune", args...); r.code != 0 && !atChance(r.stderr) {
		t.Fatalf("tune failed:\n%s", r)
	}
	other := testutil.Fixture("models", "hf_vit_op15.onnx") // the same network, another file
	succeeds(t, hyperat(t, dir, "hyperat-import", other, "--workspace", "ws", "--force"))
	ws := filepath.Join(dir, "ws")
	before := snapshot(t, ws)
	fails(t, hyperat(t, dir, "hyperat-tune", args...), 1, "another model", "--force")
	fails(t, hyperat(t, dir, "hyperat-tune", append(args, "--resume")...), 1, "another model")
	fails(t, hyperat(t, dir, "hyperat-export", "robust.onnx", "--workspace", "ws", "--force"), 1, "another model", "hyperat-tune")
	sameFiles(t, before, snapshot(t, ws))
	if _, err := os.Stat(filepath.Join(dir, "robust.onnx")); err == nil {
		t.Errorf("a refused export wrote robust.onnx")
	}

	// the model copy replaced after the import
	b, _ := os.ReadFile(testutil.Fixture("models", "hf_vit_op16.onnx"))
	write(t, workspace.ModelPath(ws), b)
	before = snapshot(t, ws)
	fails(t, hyperat(t, dir, "hyperat-tune", append(args, "--force")...), 1, "model.onnx", "changed after hyperat-import")
	sameFiles(t, before, snapshot(t, ws))

}

// toHalf converts a float32 of ordinary size to IEEE 754 binary16 (tiny
// values flush to zero), enough for test weights.
func toHalf(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int(b>>23&0xff) - 127 + 15
	if exp <= 0 {
		return sign
	}
	return sign | uint16(exp)<<10 | uint16(b>>13&0x3ff)
}

// A model whose tuned layers are stored in another float type than float32
// is refused at import (hyperat-export could not write them back), naming
// the initializer and the type.
func TestImportOtherFloatTypes(t *testing.T) {
	_, data := model(t)
	dir := t.TempDir()
	const weight = "encoder.layers.encoder_layer_1.self_attention.out_proj.weight"
	for _, dt := range []onnx.TensorProto_DataType{onnx.TensorProto_FLOAT16, onnx.TensorProto_DOUBLE} {
		t.Run(dt.String(), func(t *testing.T) {
			p := edit(t, data, dir, dt.String()+".onnx", func(m *onnx.ModelProto) {
				for _, tp := range m.Graph.Initializer {
					if tp.GetName() != weight {
						continue
					}
					var raw []byte
					for i := 0; i+4 <= len(tp.RawData); i += 4 {
						f := math.Float32frombits(binary.LittleEndian.Uint32(tp.RawData[i:]))
						if dt == onnx.TensorProto_FLOAT16 {
							raw = binary.LittleEndian.AppendUint16(raw, toHalf(f))
						} else {
							raw = binary.LittleEndian.AppendUint64(raw, math.Float64bits(float64(f)))
						}
					}
					tp.RawData, tp.DataType = raw, proto.Int32(int32(dt))
					return
				}
				t.Fatalf("no initializer %s", weight)
			})
			ws := filepath.Join(dir, "ws-"+dt.String())
			fails(t, hyperat(t, dir, "hyperat-import", p, "--workspace", ws), 1, weight, dt.String(), "float32")
			noWorkspace(t, ws)
		})
	}
}

// A model exported with a fixed batch: hyperat-tune takes a fixed batch of 1
// only with --batch 1, and no other fixed batch; hyperat-eval --data runs a
// fixed batch of 1 one image at a time and refuses others. Each refusal is
// one line that says how to export the model, before anything is written.
func TestFixedBatchModel(t *testing.T) {
	dir := t.TempDir()
	b, err := os.ReadFile(testutil.Fixture("models", "hf_vit_op16.onnx"))
	if err != nil {
		t.Skip(err)
	}
	fixed := func(n int64) string {
		return edit(t, b, dir, "fixed"+string(rune('0'+n))+".onnx", func(m *onnx.ModelProto) {
			d := m.GetGraph().GetInput()[0].GetType().GetTensorType().GetShape().GetDim()[0]
			d.Value = &onnx.TensorShapeProto_Dimension_DimValue{DimValue: n}
		})
	}
	mnist := testutil.Fixture("mnist")
	for _, n := range []int64{1, 2} {
		ws := "ws" + string(rune('0'+n))
		succeeds(t, hyperat(t, dir, "hyperat-import", fixed(n), "--workspace", ws))
		before := snapshot(t, filepath.Join(dir, ws))
		want := []string{"fixed batch of " + string(rune('0'+n)), "dynamic batch axis"}
		if n == 1 {
			want = append(want, "--batch 1")
		}
		fails(t, hyperat(t, dir, "hyperat-tune", append(tuneArgs(ws), "--batch", "8")...), 1, want...)
		sameFiles(t, before, snapshot(t, filepath.Join(dir, ws)))
	}
	fails(t, hyperat(t, dir, "hyperat-eval", fixed(2), "--data", mnist, "--eps", "0.1", "--attacks", "clean", "--limit", "3"), 1, "fixed batch of 2", "dynamic batch")
	r := hyperat(t, dir, "hyperat-eval", fixed(1), "--data", mnist, "--eps", "0.1", "--attacks", "clean,fgsm", "--limit", "3")
	succeeds(t, r)
	if !strings.Contains(r.stdout, "first 3 test images") {
		t.Errorf("eval of a fixed batch of 1:\n%s", r)
	}
}
