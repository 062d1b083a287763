package clitest

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/npy"
	"github.com/hyperat/hyperat/onnx"
	"github.com/hyperat/hyperat/workspace"
)

// bin holds the binaries built by TestMain.
var bin string

func TestMain(m *testing.M) {
	// the test binary run again by hyperatLimited and writableUnderLimits
	switch {
	case os.Getenv(limitsEnv) != "":
		os.Exit(limitsExec())
	case os.Getenv(probeEnv) != "" && len(os.Args) > 1:
		os.Exit(probeWrite(os.Args[1]))
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "hyperat-cli")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	cmd := exec.Command("go", "build", "-o", dir+string(filepath.Separator), "./cmd/hyperat-import", "./cmd/hyperat-eval", "./cmd/hyperat-tune", "./cmd/hyperat-export")
	cmd.Dir = testutil.Root()
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		return 1
	}
	bin = dir
	return m.Run()
}

// result is what one command run gave.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// hyperat runs one of the commands in dir.
func hyperat(t *testing.T, dir, name string, args ...string) result {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, name), args...)
	cmd.Dir = dir
	return runCmd(t, name, cmd)
}

// runCmd runs cmd and collects its output and exit status.
func runCmd(t *testing.T, name string, cmd *exec.Cmd) result {
	t.Helper()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%s: %v", name, err)
	}
	return r
}

// fails checks a failed run: the exit status, exactly one line on stderr naming
// every want, and no trace of a panic anywhere.
func fails(t *testing.T, r result, code int, want ...string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit status %d, want %d\n%s", r.code, code, r)
	}
	line := strings.TrimSuffix(r.stderr, "\n")
	t.Log(line)
	if line == "" || strings.Contains(line, "\n") {
		t.Errorf("stderr is not one line:\n%s", r)
	}
	for _, bad := range []string{"goroutine", "panic"} {
		if strings.Contains(r.stderr+r.stdout, bad) {
			t.Errorf("output mentions %q:\n%s", bad, r)
		}
	}
	for _, w := range want {
		if !strings.Contains(line, w) {
			t.Errorf("error line does not name %q:\n%s", w, line)
		}
	}
}

func succeeds(t *testing.T, r result) {
	t.Helper()
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("command failed:\n%s", r)
	}
}

// model returns a fixture model, read once.
func model(t *testing.T) (path string, data []byte) {
	t.Helper()
	path = testutil.Fixture("models", "tv_vit_op14.onnx")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Skipf("fixture model missing: %v", err)
	}
	return path, data
}

func write(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// edit decodes a model, applies fn, and writes the result into dir.
func edit(t *testing.T, data []byte, dir, name string, fn func(m *onnx.ModelProto)) string {
	t.Helper()
	var m onnx.ModelProto
	if err := proto.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	fn(&m)
	out, err := proto.Marshal(&m)
	if err != nil {
		t.Fatal(err)
	}
	return write(t, filepath.Join(dir, name), out)
}

// unsupportedOp renames the first MatMul to an operator the importer lacks.
func unsupportedOp(t *testing.T, m *onnx.ModelProto) (node string) {
	for _, n := range m.GetGraph().GetNode() {
		if n.GetOpType() == "MatMul" {
			n.OpType = proto.String("NonMaxSuppression")
			return n.GetName()
		}
	}
	t.Fatal("no MatMul in the fixture")
	return ""
}

// externalize moves the largest float initializer to weights.bin and returns
// its raw bytes (which the caller may or may not write).
func externalize(t *testing.T, m *onnx.ModelProto) []byte {
	var big *onnx.TensorProto
	for _, tp := range m.GetGraph().GetInitializer() {
		if len(tp.GetRawData()) > len(big.GetRawData()) {
			big = tp
		}
	}
	if big == nil {
		t.Fatal("no initializer with raw data")
	}
	raw := big.RawData
	big.RawData = nil
	big.DataLocation = onnx.TensorProto_EXTERNAL.Enum()
	big.ExternalData = []*onnx.StringStringEntryProto{
		{Key: proto.String("location"), Value: proto.String("weights.bin")},
		{Key: proto.String("offset"), Value: proto.String("0")},
		{Key: proto.String("length"), Value: proto.String(fmt.Sprint(len(raw)))},
	}
	return raw
}

// badModels makes every kind of broken model file in dir, with the words the
// error line must contain.
func badModels(t *testing.T, dir string) []struct {
	name, path string
	want       []string
} {
	_, data := model(t)
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	var node string
	opset := ""
	unsup := edit(t, data, dir, "unsupported.onnx", func(m *onnx.ModelProto) {
		node = unsupportedOp(t, m)
		for _, o := range m.GetOpsetImport() {
			if o.GetDomain() == "" {
				opset = fmt.Sprint("opset ", o.GetVersion())
			}
		}
	})
	newOpset := edit(t, data, dir, "newer-opset.onnx", func(m *onnx.ModelProto) {
		for _, o := range m.GetOpsetImport() {
			if o.GetDomain() == "" {
				o.Version = proto.Int64(onnximport.MaxOpset + 1)
			}
		}
	})
	var custom string
	otherDomain := edit(t, data, dir, "contrib.onnx", func(m *onnx.ModelProto) {
		for _, n := range m.GetGraph().GetNode() {
			if n.GetOpType() == "Softmax" {
				n.Domain, custom = proto.String("com.microsoft"), n.GetName()
				m.OpsetImport = append(m.OpsetImport, &onnx.OperatorSetIdProto{Domain: proto.String("com.microsoft"), Version: proto.Int64(1)})
				return
			}
		}
		t.Fatal("no Softmax in the fixture")
	})
	ext := filepath.Join(dir, "ext")
	os.Mkdir(ext, 0o755)
	noData := edit(t, data, ext, "external.onnx", func(m *onnx.ModelProto) { externalize(t, m) })
	cases := []struct {
		name, path string
		want       []string
	}{
		{"missing", filepath.Join(dir, "nope.onnx"), []string{"nope.onnx", "no such file"}},
		{"directory", dir, []string{dir}},
		{"empty", write(t, filepath.Join(dir, "empty.onnx"), nil), []string{"empty.onnx", "empty file"}},
		{"truncated", write(t, filepath.Join(dir, "half.onnx"), data[:len(data)/2]), []string{"half.onnx", "truncated"}},
		{"random", write(t, filepath.Join(dir, "random.onnx"), random), []string{"random.onnx"}},
		{"text", write(t, filepath.Join(dir, "text.onnx"), []byte("not a model\n")), []string{"text.onnx"}},
		{"unsupported-op", unsup, []string{"NonMaxSuppression", node, opset, "hyperat-import --ops"}},
		{"unsupported-opset", newOpset, []string{"newer-opset.onnx", fmt.Sprintf("opset %d is not supported", onnximport.MaxOpset+1),
			fmt.Sprintf("%d to %d", onnximport.MinOpset, onnximport.MaxOpset)}},
		{"other-domain-op", otherDomain, []string{"contrib.onnx", "com.microsoft.Softmax", custom}},
		{"external-data-missing", noData, []string{"external.onnx", "weights.bin"}},
	}
	if os.Geteuid() != 0 { // root reads anything
		p := write(t, filepath.Join(dir, "locked.onnx"), data)
		os.Chmod(p, 0)
		cases = append(cases, struct {
			name, path string
			want       []string
		}{"unreadable", p, []string{"locked.onnx", "permission denied"}})
	}
	return cases
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
		t.Errorf("files changed: %d before, %d after", len(before), len(after))
	}
	for p, b := range before {
		if after[p] != b {
			t.Errorf("%s changed", p)
		}
	}
}

func TestImport(t *testing.T) {
	path, data := model(t)
	dir := t.TempDir()
	r := hyperat(t, dir, "hyperat-import", path)
	succeeds(t, r)
	for _, w := range []string{"producer", "pytorch", "opset", "14", "[batch,3,32,32]", "symbolic batch",
		"parameters", "encoder.layers.encoder_layer_1", "self_attention.in_proj", "qkv", "mlp.3", "fc2", "heads.head", "head"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("output lacks %q:\n%s", w, r.stdout)
		}
	}
	wsDir := filepath.Join(dir, workspace.DefaultDir)
	ws, err := workspace.Read(wsDir)
	if err != nil {
		t.Fatal(err)
	}
	if ws.Source.Path != path || ws.Source.SHA256 != workspace.Sum(data) || !filepath.IsAbs(ws.Source.Abs) ||
		ws.Opset != 14 || ws.Input.Name != "input" || ws.Input.GraphShape().String() != "[batch,3,32,32]" ||
		len(ws.Blocks) != 2 || len(ws.Layers) != 9 || ws.Params == 0 {
		t.Errorf("workspace %+v", ws)
	}
	if cp, _ := os.ReadFile(workspace.ModelPath(wsDir)); !bytes.Equal(cp, data) {
		t.Errorf("model.onnx is not a copy of the model")
	}

	// The same model again is fine; another one is refused without --force.
	succeeds(t, hyperat(t, dir, "hyperat-import", path))
	other := edit(t, data, dir, "other.onnx", func(m *onnx.ModelProto) { m.DocString = proto.String("changed") })
	before := snapshot(t, wsDir)
	fails(t, hyperat(t, dir, "hyperat-import", other), 1, "another model", "--force")
	sameFiles(t, before, snapshot(t, wsDir))
	succeeds(t, hyperat(t, dir, "hyperat-import", other, "--force"))
	if ws, err := workspace.Read(wsDir); err != nil || ws.Source.Path != other {
		t.Errorf("after --force: %v %+v", err, ws)
	}

	// A folder that holds other things is no workspace.
	busy := filepath.Join(dir, "busy")
	os.Mkdir(busy, 0o755)
	write(t, filepath.Join(busy, "notes.txt"), []byte("mine"))
	fails(t, hyperat(t, dir, "hyperat-import", path, "--workspace", busy), 1, "busy", "not a hyperat workspace")
}

// A model with external data imports, and its data file is copied beside model.onnx.
func TestImportExternalData(t *testing.T) {
	_, data := model(t)
	dir := t.TempDir()
	var raw []byte
	edit(t, data, dir, "ext.onnx", func(m *onnx.ModelProto) { raw = externalize(t, m) })
	write(t, filepath.Join(dir, "weights.bin"), raw)
	r := hyperat(t, dir, "hyperat-import", "ext.onnx", "--workspace", "ws")
	succeeds(t, r)
	if got, _ := os.ReadFile(filepath.Join(dir, "ws", "weights.bin")); !bytes.Equal(got, raw) {
		t.Errorf("weights.bin was not copied into the workspace")
	}
	// the copy runs by itself
	in := testutil.Fixture("golden", "tv_vit", "input.npy")
	succeeds(t, hyperat(t, dir, "hyperat-eval", filepath.Join("ws", workspace.ModelFile), "--input", in, "--logits", "y.npy"))
}

func TestImportBadModels(t *testing.T) {
	dir := t.TempDir()
	path, _ := model(t)
	succeeds(t, hyperat(t, dir, "hyperat-import", path, "--workspace", "ws"))
	before := snapshot(t, filepath.Join(dir, "ws"))
	for _, c := range badModels(t, dir) {
		t.Run(c.name, func(t *testing.T) {
			fails(t, hyperat(t, dir, "hyperat-import", c.path, "--workspace", "ws"), 1, c.want...)
			sameFiles(t, before, snapshot(t, filepath.Join(dir, "ws")))
		})
	}
}

func TestEvalBadModels(t *testing.T) {
	dir := t.TempDir()
	in := testutil.Fixture("golden", "tv_vit", "input.npy")
	out := write(t, filepath.Join(dir, "y.npy"), []byte("keep me"))
	for _, c := range badModels(t, dir) {
		t.Run(c.name, func(t *testing.T) {
			fails(t, hyperat(t, dir, "hyperat-eval", c.path, "--input", in, "--logits", out), 1, c.want...)
			if b, _ := os.ReadFile(out); string(b) != "keep me" {
				t.Errorf("the logits file changed")
			}
		})
	}
}

func TestEval(t *testing.T) {
	path, _ := model(t)
	dir := t.TempDir()
	in := testutil.Fixture("golden", "tv_vit", "input.npy")
	want, err := npy.ReadFile(testutil.Fixture("golden", "tv_vit", "logits.npy"))
	if err != nil {
		t.Skip(err)
	}
	for _, batch := range []string{"32", "2", "1"} { // whole, with a remainder, one by one
		succeeds(t, hyperat(t, dir, "hyperat-eval", path, "--input", in, "--logits", "y.npy", "--batch", batch))
		got, err := npy.ReadFile(filepath.Join(dir, "y.npy"))
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got.Shape) != fmt.Sprint(want.Shape) || testutil.MaxAbsDiff(got.F, want.F) > 1e-4 {
			t.Errorf("batch %s: logits %v differ from the golden %v by %g", batch, got.Shape, want.Shape, testutil.MaxAbsDiff(got.F, want.F))
		}
	}
}

// A model exported with a fixed batch runs at that batch: one sample at a
// time for batch 1; a sample count that is no multiple of it is refused.
func TestEvalFixedBatch(t *testing.T) {
	_, data := model(t)
	dir := t.TempDir()
	fixed := func(name string, n int64) string {
		return edit(t, data, dir, name, func(m *onnx.ModelProto) {
			d := m.GetGraph().GetInput()[0].GetType().GetTensorType().GetShape().GetDim()[0]
			d.Value = &onnx.TensorShapeProto_Dimension_DimValue{DimValue: n}
		})
	}
	in := testutil.Fixture("golden", "tv_vit", "input.npy")
	want, err := npy.ReadFile(testutil.Fixture("golden", "tv_vit", "logits.npy"))
	if err != nil {
		t.Skip(err)
	}
	one := fixed("one.onnx", 1)
	succeeds(t, hyperat(t, dir, "hyperat-eval", one, "--input", in, "--logits", "y.npy"))
	got, err := npy.ReadFile(filepath.Join(dir, "y.npy"))
	if err != nil || testutil.MaxAbsDiff(got.F, want.F) > 1e-4 {
		t.Errorf("fixed batch 1: %v, logits differ by %g", err, testutil.MaxAbsDiff(got.F, want.F))
	}
	r := hyperat(t, dir, "hyperat-import", one, "--workspace", "ws")
	succeeds(t, r)
	if !strings.Contains(r.stdout, "[1,3,32,32] (fixed batch 1)") {
		t.Errorf("import does not show the fixed batch:\n%s", r.stdout)
	}
	fails(t, hyperat(t, dir, "hyperat-eval", fixed("two.onnx", 2), "--input", in, "--logits", "y.npy"), 1, "fixed batch of 2", "3 samples")
}

func TestEvalBadInputs(t *testing.T) {
	path, _ := model(t)
	dir := t.TempDir()
	npyFile := func(name string, tt *graph.Tensor) string {
		p := filepath.Join(dir, name)
		if err := npy.WriteFile(p, tt); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := npyFile("good.npy", graph.NewTensor(graph.Float32, []int{2, 3, 32, 32}))
	goodBytes, _ := os.ReadFile(good)
	out := write(t, filepath.Join(dir, "y.npy"), []byte("keep me"))
	cases := []struct {
		name, input string
		want        []string
	}{
		{"wrong-size", npyFile("small.npy", graph.NewTensor(graph.Float32, []int{2, 3, 28, 28})), []string{"small.npy", "[2,3,28,28]", "[batch,3,32,32]"}},
		{"wrong-rank", npyFile("rank3.npy", graph.NewTensor(graph.Float32, []int{3, 32, 32})), []string{"rank3.npy", "[3,32,32]", "[batch,3,32,32]"}},
		{"wrong-dtype", npyFile("int.npy", graph.NewTensor(graph.Int64, []int{2, 3, 32, 32})), []string{"int.npy", "int64", "float32"}},
		{"no-samples", npyFile("none.npy", graph.NewTensor(graph.Float32, []int{0, 3, 32, 32})), []string{"none.npy", "no samples"}},
		{"truncated", write(t, filepath.Join(dir, "trunc.npy"), goodBytes[:len(goodBytes)-100]), []string{"trunc.npy", "truncated"}},
		{"header-only", write(t, filepath.Join(dir, "head.npy"), goodBytes[:20]), []string{"head.npy"}},
		{"empty", write(t, filepath.Join(dir, "empty.npy"), nil), []string{"empty.npy"}},
		{"not-npy", write(t, filepath.Join(dir, "text.npy"), []byte("1 2 3\n")), []string{"text.npy", "not an .npy"}},
		{"missing", filepath.Join(dir, "nope.npy"), []string{"nope.npy", "no such file"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			fails(t, hyperat(t, dir, "hyperat-eval", path, "--input", c.input, "--logits", out), 1, c.want...)
			if b, _ := os.ReadFile(out); string(b) != "keep me" {
				t.Errorf("the logits file changed")
			}
		})
	}
	// An unwritable output is one line too, and leaves no temporary file.
	fails(t, hyperat(t, dir, "hyperat-eval", path, "--input", good, "--logits", filepath.Join(dir, "no", "such", "dir", "y.npy")), 1, "y.npy")
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}

func TestUsage(t *testing.T) {
	path, _ := model(t)
	dir := t.TempDir()
	for _, c := range []struct {
		cmd  string
		args []string
		want []string
	}{
		{"hyperat-import", nil, []string{"no model", "--help"}},
		{"hyperat-import", []string{"--bogus", path}, []string{"unknown flag", "--bogus"}},
		{"hyperat-import", []string{path, path}, []string{"one model"}},
		{"hyperat-import", []string{"--ops", path}, []string{"--ops"}},
		{"hyperat-eval", nil, []string{"no model"}},
		{"hyperat-eval", []string{path}, []string{"--input"}},
		{"hyperat-eval", []string{path, "--input", "x.npy"}, []string{"--logits"}},
		{"hyperat-eval", []string{path, "--input", "x.npy", "--logits", "y.npy", "--batch", "0"}, []string{"--batch"}},
		{"hyperat-eval", []string{path, "--batch", "many"}, []string{"--batch"}},
	} {
		t.Run(c.cmd+" "+strings.Join(c.args, " "), func(t *testing.T) {
			fails(t, hyperat(t, dir, c.cmd, c.args...), 2, c.want...)
		})
	}
	for _, cmd := range []string{"hyperat-import", "hyperat-eval"} {
		r := hyperat(t, dir, cmd, "--help")
		succeeds(t, r)
		if !strings.HasPrefix(r.stdout, "usage: "+cmd) {
			t.Errorf("%s --help:\n%s", cmd, r)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, workspace.DefaultDir)); err == nil {
		t.Errorf("a failed or help run made a workspace")
	}
}

func TestOps(t *testing.T) {
	r := hyperat(t, t.TempDir(), "hyperat-import", "--ops")
	succeeds(t, r)
	for _, op := range []string{"MatMul", "Softmax", "LayerNormalization", "Gelu", "Erf", "Where"} {
		if !strings.Contains(r.stdout, "\n"+op+"\n") {
			t.Errorf("--ops does not list %s:\n%s", op, r.stdout)
		}
	}
}
