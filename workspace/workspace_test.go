package workspace

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/layers"
)

func sample(sum string) *Workspace {
	return &Workspace{
		Format: FormatVersion,
		Source: Source{Path: "m.onnx", Abs: "/x/m.onnx", SHA256: sum, Size: 3},
		Input:  Input{Name: "x", DType: "float32", Shape: []Dim{{N: -1, Sym: "batch"}, {N: 3}, {N: -1}}},
		Blocks: []Block{{Index: 0, Name: "blocks.0", Structural: true}},
		Layers: []Layer{{Name: "blocks.0.attn.qkv", Kind: "qkv", In: 8, Out: 24, Weight: "w", Node: "n"}},
	}
}

// Symbolic dims are written as their names, sizes as numbers, and read back.
func TestDimJSON(t *testing.T) {
	in := sample("ab").Input
	js, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"name":"x","dtype":"float32","shape":["batch",3,"?"]}`; string(js) != want {
		t.Errorf("got %s, want %s", js, want)
	}
	var back Input
	if err := json.Unmarshal(js, &back); err != nil || !reflect.DeepEqual(back, in) {
		t.Errorf("read back %+v (%v), want %+v", back, err, in)
	}
	if got := back.GraphShape().String(); got != "[batch,3,?]" {
		t.Errorf("graph shape %s", got)
	}
	for _, bad := range []string{`-1`, `1.5`, `true`, `null`} {
		var d Dim
		if err := json.Unmarshal([]byte(bad), &d); err == nil && bad != "null" {
			t.Errorf("dim %s was accepted", bad)
		}
	}
}

// model writes a model file holding data and returns its path.
func model(t *testing.T, data string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "m.onnx")
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestWriteRead(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ws")
	ws := sample(Sum([]byte("abc")))
	if err := Write(dir, ws, model(t, "abc"), false); err != nil {
		t.Fatal(err)
	}
	got, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, ws) {
		t.Errorf("read %+v, wrote %+v", got, ws)
	}
	if b, _ := os.ReadFile(ModelPath(dir)); string(b) != "abc" {
		t.Errorf("model copy %q", b)
	}
	// the same model again: allowed
	if err := Write(dir, ws, model(t, "abc"), false); err != nil {
		t.Errorf("rewriting the same model: %v", err)
	}
	// another model: refused, then forced
	other := sample(Sum([]byte("xyz")))
	if err := Write(dir, other, model(t, "xyz"), false); err == nil || !strings.Contains(err.Error(), "another model") {
		t.Errorf("another model: %v", err)
	}
	if b, _ := os.ReadFile(ModelPath(dir)); string(b) != "abc" {
		t.Errorf("a refused write changed the model copy")
	}
	if err := Write(dir, other, model(t, "xyz"), true); err != nil {
		t.Errorf("forced: %v", err)
	}
}

func TestCheck(t *testing.T) {
	root := t.TempDir()
	ws := sample("ab")
	file := filepath.Join(root, "file")
	os.WriteFile(file, []byte("x"), 0o644)
	busy := filepath.Join(root, "busy")
	os.Mkdir(busy, 0o755)
	os.WriteFile(filepath.Join(busy, "notes"), []byte("x"), 0o644)
	empty := filepath.Join(root, "empty")
	os.Mkdir(empty, 0o755)
	corrupt := filepath.Join(root, "corrupt")
	os.Mkdir(corrupt, 0o755)
	os.WriteFile(filepath.Join(corrupt, ManifestFile), []byte("{"), 0o644)
	for _, c := range []struct {
		dir   string
		force bool
		want  string // "" for no error
	}{
		{filepath.Join(root, "new"), false, ""},
		{empty, false, ""},
		{file, false, "not a folder"},
		{file, true, "not a folder"},
		{busy, false, "not a hyperat workspace"},
		{busy, true, ""},
		{corrupt, false, "--force"},
		{corrupt, true, ""},
	} {
		err := Check(c.dir, ws, c.force)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("Check(%s, force %v) = %v, want %q", filepath.Base(c.dir), c.force, err, c.want)
		}
	}
}

func TestReadErrors(t *testing.T) {
	root := t.TempDir()
	for name, content := range map[string]string{
		"missing":  "",
		"corrupt":  "{not json",
		"newer":    `{"format": 99, "source": {"sha256": "ab"}}`,
		"noformat": `{"source": {"sha256": "ab"}}`,
		"nosource": `{"format": 1}`,
	} {
		dir := filepath.Join(root, name)
		os.Mkdir(dir, 0o755)
		if content != "" {
			os.WriteFile(filepath.Join(dir, ManifestFile), []byte(content), 0o644)
		}
		_, err := Read(dir)
		if err == nil || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// New records the model and the layers Recognize found.
func TestNew(t *testing.T) {
	path := testutil.Fixture("models", "hf_vit_op15.onnx")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Skip(err)
	}
	m, err := onnximport.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := layers.Recognize(m.Graph)
	if err != nil {
		t.Fatal(err)
	}
	sum, size, err := SumFile(path)
	if err != nil || sum != Sum(data) || size != int64(len(data)) {
		t.Fatalf("SumFile: %s %d %v, want %s %d", sum, size, err, Sum(data), len(data))
	}
	ws, err := New(path, sum, size, m, r)
	if err != nil {
		t.Fatal(err)
	}
	if ws.Source.SHA256 != Sum(data) || ws.Opset != 15 || ws.Producer == "" || len(ws.Layers) != len(r.Linears) ||
		len(ws.Blocks) != 2 || ws.Input.Name != "input" || len(ws.ExternalData) != 0 {
		t.Errorf("%+v", ws)
	}
	l := ws.Layers[0]
	if l.Name != "vit.encoder.layer.0.attention.attention.query" || l.Kind != "q" || l.Weight == "" || l.Bias == "" || l.Node == "" {
		t.Errorf("first layer %+v", l)
	}
}
