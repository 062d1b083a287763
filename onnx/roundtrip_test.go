package onnx

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"
)

// modelFiles lists the ONNX files the round-trip test reads: the fixtures, and the
// shared models when ../shared exists beside the repository.
func modelFiles(t *testing.T) []string {
	var files []string
	for _, pat := range []string{"../fixtures/models/*.onnx", "../../shared/models/*.onnx"} {
		m, err := filepath.Glob(pat)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Fatal("no ONNX files found under fixtures/models")
	}
	return files
}

// Reading then writing a model must give back the same bytes, so that export can
// change initializers and leave everything else, unknown newer fields included, as it was.
func TestRoundTripBytes(t *testing.T) {
	for _, f := range modelFiles(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var m ModelProto
			if err := proto.Unmarshal(data, &m); err != nil {
				t.Fatal(err)
			}
			if m.GetGraph() == nil || len(m.GetGraph().GetNode()) == 0 {
				t.Fatal("decoded model has no graph nodes")
			}
			out, err := proto.MarshalOptions{Deterministic: true}.Marshal(&m)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out, data) {
				n := 0
				for n < len(out) && n < len(data) && out[n] == data[n] {
					n++
				}
				t.Fatalf("re-encoded model differs: %d vs %d bytes, first difference at byte %d", len(out), len(data), n)
			}
		})
	}
}
