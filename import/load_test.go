package onnximport_test

import (
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	_ "github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/onnx"
)

// importBytes imports a model the plain way: the file read, decoded and
// converted in memory.
func importBytes(t *testing.T, path string) *onnximport.Model {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Skip(err)
	}
	p, err := onnximport.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnximport.Import(p, filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// sameParams fails unless a and b have the same parameters, bit for bit.
func sameParams(t *testing.T, a, b *graph.Graph) {
	t.Helper()
	if len(a.Params) != len(b.Params) {
		t.Fatalf("%d parameters, want %d", len(a.Params), len(b.Params))
	}
	for i, p := range a.Params {
		q := b.Params[i]
		x, y := p.Const, q.Const
		if p.Name != q.Name || x.DType != y.DType || !equalInts(x.Shape, y.Shape) || len(x.F) != len(y.F) || len(x.I) != len(y.I) || len(x.B) != len(y.B) {
			t.Fatalf("parameter %d: %s %s %v, want %s %s %v", i, p.Name, x.DType, x.Shape, q.Name, y.DType, y.Shape)
		}
		for j := range x.F {
			if math.Float32bits(x.F[j]) != math.Float32bits(y.F[j]) {
				t.Fatalf("%s[%d] = %v, want %v", p.Name, j, x.F[j], y.F[j])
			}
		}
		for j := range x.I {
			if x.I[j] != y.I[j] {
				t.Fatalf("%s[%d] = %v, want %v", p.Name, j, x.I[j], y.I[j])
			}
		}
		for j := range x.B {
			if x.B[j] != y.B[j] {
				t.Fatalf("%s[%d] = %v, want %v", p.Name, j, x.B[j], y.B[j])
			}
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Load (the file mapped, the weights read through a buffer into one block)
// gives the parameters that decoding the file's bytes gives, and keeps the
// decoded model's bytes.
func TestLoadMatchesImport(t *testing.T) {
	files, _ := filepath.Glob(testutil.Fixture("models", "*.onnx"))
	if len(files) == 0 {
		t.Skip("no fixture models")
	}
	for _, f := range files {
		got, err := onnximport.Load(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		want := importBytes(t, f)
		sameParams(t, got.Graph, want.Graph)
		if !proto.Equal(got.Proto, want.Proto) {
			t.Fatalf("%s: the decoded models differ", filepath.Base(f))
		}
	}
}

// externalize moves the raw_data of the initializers of at least min bytes
// of m to the file loc (relative to dir), each at a 64-byte aligned offset,
// and writes the model to dir/name. It returns the model's path and how
// many initializers it moved.
func externalize(t *testing.T, m *onnx.ModelProto, dir, name, loc string, min int) (string, int) {
	t.Helper()
	m = proto.Clone(m).(*onnx.ModelProto)
	var data []byte
	moved := 0
	for _, tp := range m.GetGraph().GetInitializer() {
		raw := tp.GetRawData()
		if raw == nil || len(raw) < min {
			continue
		}
		for len(data)%64 != 0 {
			data = append(data, 0)
		}
		off := len(data)
		data = append(data, raw...)
		tp.RawData = nil
		tp.DataLocation = onnx.TensorProto_EXTERNAL.Enum()
		tp.ExternalData = []*onnx.StringStringEntryProto{
			{Key: proto.String("location"), Value: proto.String(loc)},
			{Key: proto.String("offset"), Value: proto.String(strconv.Itoa(off))},
			{Key: proto.String("length"), Value: proto.String(strconv.Itoa(len(raw)))},
		}
		moved++
	}
	if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, loc)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, filepath.FromSlash(loc)), data, 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, moved
}

// A model whose weights are external data, all of them or only the large
// ones, in the model's folder or a folder below it, imports to the same
// parameters as the model that holds them.
func TestExternalDataMatchesInline(t *testing.T) {
	src := testutil.Fixture("models", "tv_vit_op17.onnx")
	inline := importBytes(t, src)
	for _, c := range []struct {
		name, loc string
		min       int
	}{
		{"all", "model.onnx.data", 1},
		{"large ones", "weights/w.bin", 4096},
	} {
		dir := t.TempDir()
		path, moved := externalize(t, inline.Proto, dir, "model.onnx", c.loc, c.min)
		total := len(inline.Proto.GetGraph().GetInitializer())
		if moved == 0 || (c.min > 1 && moved == total) {
			t.Fatalf("%s: %d of %d initializers moved", c.name, moved, total)
		}
		for _, load := range []func() (*onnximport.Model, error){
			func() (*onnximport.Model, error) { return onnximport.Load(path) },
			func() (*onnximport.Model, error) {
				b, err := os.ReadFile(path)
				if err != nil {
					return nil, err
				}
				p, err := onnximport.Decode(b)
				if err != nil {
					return nil, err
				}
				return onnximport.Import(p, dir)
			},
		} {
			m, err := load()
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			sameParams(t, m.Graph, inline.Graph)
		}
	}
}

// External data that is not where it says, or that would be read from
// outside the model's folder, is refused with one line naming the location.
func TestExternalDataRefused(t *testing.T) {
	inline := importBytes(t, testutil.Fixture("models", "mnist_vit_op17.onnx"))
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret.bin")
	if err := os.WriteFile(secret, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	edit := func(dir string, f func(kv map[string]string)) string {
		path, _ := externalize(t, inline.Proto, dir, "m.onnx", "w.bin", 4096)
		b, _ := os.ReadFile(path)
		var m onnx.ModelProto
		if err := proto.Unmarshal(b, &m); err != nil {
			t.Fatal(err)
		}
		for _, tp := range m.GetGraph().GetInitializer() {
			if tp.GetDataLocation() != onnx.TensorProto_EXTERNAL {
				continue
			}
			kv := map[string]string{}
			for _, e := range tp.ExternalData {
				kv[e.GetKey()] = e.GetValue()
			}
			f(kv)
			tp.ExternalData = nil
			for _, k := range []string{"location", "offset", "length"} {
				if v, ok := kv[k]; ok {
					tp.ExternalData = append(tp.ExternalData, &onnx.StringStringEntryProto{Key: proto.String(k), Value: proto.String(v)})
				}
			}
			break // the first one is enough
		}
		b, _ = proto.Marshal(&m)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	link := func(dir string) {
		if err := os.Symlink(secret, filepath.Join(dir, "link.bin")); err != nil {
			t.Skip(err)
		}
	}
	rel, _ := filepath.Rel(t.TempDir(), secret)
	cases := []struct {
		name  string
		setup func(dir string)
		edit  func(kv map[string]string)
		want  string
	}{
		{"parent", nil, func(kv map[string]string) { kv["location"] = filepath.ToSlash(rel) }, "relative path inside the model's folder"},
		{"absolute", nil, func(kv map[string]string) { kv["location"] = secret }, "relative path inside the model's folder"},
		{"empty", nil, func(kv map[string]string) { delete(kv, "location") }, "relative path inside the model's folder"},
		{"link outside", link, func(kv map[string]string) { kv["location"] = "link.bin" }, "must be inside the model's folder"},
		{"missing", nil, func(kv map[string]string) { kv["location"] = "none.bin" }, `"none.bin" not found next to the model`},
		{"past the end", nil, func(kv map[string]string) { kv["offset"] = "100000000" }, "too short"},
		{"negative offset", nil, func(kv map[string]string) { kv["offset"] = "-4" }, "too short"},
		{"wrong length", nil, func(kv map[string]string) { kv["length"] = "8" }, "want"},
		{"bad offset", nil, func(kv map[string]string) { kv["offset"] = "x" }, "external data offset"},
	}
	for _, c := range cases {
		dir := t.TempDir()
		if c.setup != nil {
			c.setup(dir)
		}
		path := edit(dir, c.edit)
		_, err := onnximport.Load(path)
		if err == nil || !strings.Contains(err.Error(), c.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want one line with %q", c.name, err, c.want)
		}
	}
}
