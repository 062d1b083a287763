package onnximport

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/onnx"
)

func fixtureModels(t testing.TB) []string {
	files, _ := filepath.Glob(testutil.Fixture("models", "*.onnx"))
	if len(files) == 0 {
		t.Skip("no fixture models")
	}
	return files
}

// within reports whether b is a slice of buf's memory.
func within(b, buf []byte) bool {
	if len(b) == 0 {
		return false
	}
	p, lo := uintptr(unsafe.Pointer(&b[0])), uintptr(unsafe.Pointer(&buf[0]))
	return p >= lo && p+uintptr(len(b)) <= lo+uintptr(len(buf))
}

// decodeShared decodes every fixture into the model proto.Unmarshal gives,
// which encodes back to the file's bytes, with the large raw_data left in
// the file's buffer and the small ones copied.
func TestDecodeSharedFixtures(t *testing.T) {
	for _, f := range fixtureModels(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := decodeShared(data)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		want, err := unmarshal(data)
		if err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(got, want) {
			t.Fatalf("%s: decodeShared differs from proto.Unmarshal", filepath.Base(f))
		}
		out, err := proto.MarshalOptions{Deterministic: true}.Marshal(got)
		if err != nil || !bytes.Equal(out, data) {
			t.Fatalf("%s: re-encoded model differs from the file (%v)", filepath.Base(f), err)
		}
		shared := 0
		for _, tp := range got.GetGraph().GetInitializer() {
			raw := tp.GetRawData()
			if in := within(raw, data); in != (len(raw) >= minShared) {
				t.Fatalf("%s: initializer %q, %d bytes of raw_data: in the buffer %v", filepath.Base(f), tp.GetName(), len(raw), in)
			} else if in {
				shared++
			}
		}
		if shared == 0 {
			t.Errorf("%s: no raw_data left in the buffer", filepath.Base(f))
		}
	}
}

// wireModel encodes a model with a graph of the given initializers (each
// already encoded) and one node, field by field, so that the test can lay
// out what Marshal never writes (a field twice).
func wireModel(graphs int, inits ...[]byte) []byte {
	var g []byte
	n, _ := proto.Marshal(&onnx.NodeProto{OpType: proto.String("Identity"), Input: []string{"w"}, Output: []string{"y"}})
	g = protowire.AppendTag(g, 1, protowire.BytesType)
	g = protowire.AppendBytes(g, n)
	for _, t := range inits {
		g = protowire.AppendTag(g, graphInitializer, protowire.BytesType)
		g = protowire.AppendBytes(g, t)
	}
	var m []byte
	m = protowire.AppendTag(m, 1, protowire.VarintType) // ir_version
	m = protowire.AppendVarint(m, 8)
	for i := 0; i < graphs; i++ {
		m = protowire.AppendTag(m, modelGraph, protowire.BytesType)
		m = protowire.AppendBytes(m, g)
	}
	return m
}

// wireTensor encodes a float tensor named name whose raw_data fields (in
// order) are raws, with its name after them.
func wireTensor(name string, raws ...[]byte) []byte {
	var t []byte
	t = protowire.AppendTag(t, 2, protowire.VarintType) // data_type
	t = protowire.AppendVarint(t, uint64(onnx.TensorProto_FLOAT))
	for _, r := range raws {
		t = protowire.AppendTag(t, tensorRawData, protowire.BytesType)
		t = protowire.AppendBytes(t, r)
	}
	t = protowire.AppendTag(t, 8, protowire.BytesType) // name
	return protowire.AppendBytes(t, []byte(name))
}

// Layouts splitRaw does not take apart decode as proto.Unmarshal decodes
// them (the last raw_data of a tensor wins, two graphs merge), and bytes
// that do not parse are an error, as they are for proto.Unmarshal.
func TestDecodeSharedLayouts(t *testing.T) {
	big := func(b byte) []byte { return bytes.Repeat([]byte{b}, minShared) }
	cases := map[string]struct {
		data   []byte
		shared bool
	}{
		"one raw_data":             {wireModel(1, wireTensor("w", big(1)), wireTensor("v", big(2))), true},
		"small raw_data":           {wireModel(1, wireTensor("w", []byte{1, 2, 3, 4})), false},
		"raw_data twice":           {wireModel(1, wireTensor("w", big(1), big(2))), false},
		"empty raw_data":           {wireModel(1, wireTensor("w", []byte{})), false},
		"no raw_data":              {wireModel(1, wireTensor("w")), false},
		"two graphs":               {wireModel(2, wireTensor("w", big(1))), false},
		"truncated":                {wireModel(1, wireTensor("w", big(1)))[:minShared/2], false},
		"big then small then big":  {wireModel(1, wireTensor("a", big(1)), wireTensor("b", []byte{9}), wireTensor("c", big(3))), true},
		"graph is not a message":   {append(protowire.AppendTag(nil, modelGraph, protowire.VarintType), 1), false},
		"initializer not bytes":    {wireModel(1, append(protowire.AppendTag(nil, tensorRawData, protowire.VarintType), 5)), false},
		"raw_data of wrong type":   {wireModel(1, append(protowire.AppendTag(nil, tensorRawData, protowire.Fixed32Type), 1, 2, 3, 4)), false},
		"unknown fields preserved": {wireModel(1, append(wireTensor("w", big(7)), protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 11)...)), true},
	}
	for name, c := range cases {
		got, gerr := decodeShared(c.data)
		want, werr := unmarshal(c.data)
		if (gerr == nil) != (werr == nil) {
			t.Errorf("%s: decodeShared error %v, proto.Unmarshal error %v", name, gerr, werr)
			continue
		}
		if werr != nil {
			continue
		}
		if !proto.Equal(got, want) {
			t.Errorf("%s: decodeShared differs from proto.Unmarshal", name)
		}
		a, _ := proto.MarshalOptions{Deterministic: true}.Marshal(got)
		b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(want)
		if !bytes.Equal(a, b) {
			t.Errorf("%s: the two decodings encode differently", name)
		}
		shared := false
		for _, tp := range got.GetGraph().GetInitializer() {
			shared = shared || within(tp.GetRawData(), c.data)
		}
		if shared != c.shared {
			t.Errorf("%s: raw_data left in the buffer: %v, want %v", name, shared, c.shared)
		}
	}
}

// FuzzDecodeShared: on any bytes, decodeShared fails when proto.Unmarshal
// does and otherwise gives the same model.
//
//	go test ./import -run '^$' -fuzz FuzzDecodeShared -fuzztime 30s
func FuzzDecodeShared(f *testing.F) {
	big := bytes.Repeat([]byte{5}, minShared)
	f.Add(wireModel(1, wireTensor("w", big), wireTensor("v", []byte{1})))
	f.Add(wireModel(2, wireTensor("w", big, big)))
	if files, _ := filepath.Glob(testutil.Fixture("models", "mnist_vit_op17.onnx")); len(files) > 0 {
		if data, err := os.ReadFile(files[0]); err == nil {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		got, gerr := decodeShared(data)
		want, werr := unmarshal(data)
		if (gerr == nil) != (werr == nil) {
			t.Fatalf("decodeShared error %v, proto.Unmarshal error %v", gerr, werr)
		}
		if werr == nil && !proto.Equal(got, want) {
			t.Fatal("decodeShared differs from proto.Unmarshal")
		}
	})
}
