// Package safetensors reads and writes the safetensors format (an 8-byte
// little-endian header length, a JSON header mapping names to dtype, shape
// and byte offsets, then the raw little-endian data) for float32 tensors.
// Files carry a SHA-256 of their data in the header's metadata, verified on
// load, so a damaged checkpoint is refused instead of silently used.
package safetensors

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"sort"

	"github.com/hyperat/hyperat/fsx"
	"github.com/hyperat/hyperat/graph"
)

type entry struct {
	DType   string   `json:"dtype"`
	Shape   []int    `json:"shape"`
	Offsets [2]int64 `json:"data_offsets"`
}

const checksumKey = "sha256"

// Encode serializes tensors (names sorted) with metadata.
func Encode(tensors map[string]*graph.Tensor, meta map[string]string) ([]byte, error) {
	names := make([]string, 0, len(tensors))
	for n := range tensors {
		names = append(names, n)
	}
	sort.Strings(names)
	var data bytes.Buffer
	header := map[string]any{}
	b := make([]byte, 4)
	for _, n := range names {
		t := tensors[n]
		if t.DType != graph.Float32 {
			return nil, fmt.Errorf("tensor %s: only float32 is written", n)
		}
		start := int64(data.Len())
		for _, v := range t.F {
			binary.LittleEndian.PutUint32(b, math.Float32bits(v))
			data.Write(b)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		header[n] = entry{DType: "F32", Shape: shape, Offsets: [2]int64{start, int64(data.Len())}}
	}
	md := map[string]string{}
	for k, v := range meta {
		md[k] = v
	}
	sum := sha256.Sum256(data.Bytes())
	md[checksumKey] = hex.EncodeToString(sum[:])
	header["__metadata__"] = md
	h, err := json.Marshal(header)
	if err != nil {
		return nil, err
	}
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	out := make([]byte, 8, 8+len(h)+data.Len())
	binary.LittleEndian.PutUint64(out, uint64(len(h)))
	out = append(out, h...)
	return append(out, data.Bytes()...), nil
}

// WriteFile encodes and writes atomically.
func WriteFile(path string, tensors map[string]*graph.Tensor, meta map[string]string) error {
	b, err := Encode(tensors, meta)
	if err != nil {
		return err
	}
	return fsx.WriteFile(path, b)
}

// Decode parses a safetensors file and verifies its checksum when present.
func Decode(b []byte) (map[string]*graph.Tensor, map[string]string, error) {
	if len(b) < 8 {
		return nil, nil, errors.New("not a safetensors file (too short)")
	}
	n := binary.LittleEndian.Uint64(b)
	if n > uint64(len(b)-8) || n > 100<<20 {
		return nil, nil, errors.New("not a safetensors file (bad header length)")
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b[8:8+n], &raw); err != nil {
		return nil, nil, fmt.Errorf("not a safetensors file (%v)", err)
	}
	data := b[8+n:]
	meta := map[string]string{}
	if m, ok := raw["__metadata__"]; ok {
		if err := json.Unmarshal(m, &meta); err != nil {
			return nil, nil, fmt.Errorf("bad metadata: %v", err)
		}
		delete(raw, "__metadata__")
	}
	if want, ok := meta[checksumKey]; ok {
		sum := sha256.Sum256(data)
		if hex.EncodeToString(sum[:]) != want {
			return nil, nil, errors.New("checksum mismatch: the file is damaged")
		}
	}
	out := map[string]*graph.Tensor{}
	for name, r := range raw {
		var e entry
		if err := json.Unmarshal(r, &e); err != nil {
			return nil, nil, fmt.Errorf("tensor %s: %v", name, err)
		}
		if e.DType != "F32" {
			return nil, nil, fmt.Errorf("tensor %s: dtype %s is not supported", name, e.DType)
		}
		cnt := 1
		for _, d := range e.Shape {
			if d < 0 || (d > 0 && cnt > math.MaxInt32/d) {
				return nil, nil, fmt.Errorf("tensor %s: bad shape %v", name, e.Shape)
			}
			cnt *= d
		}
		lo, hi := e.Offsets[0], e.Offsets[1]
		if lo < 0 || hi < lo || hi > int64(len(data)) || hi-lo != int64(4*cnt) {
			return nil, nil, fmt.Errorf("tensor %s: bad data offsets", name)
		}
		t := graph.NewTensor(graph.Float32, e.Shape)
		for i := range t.F {
			t.F[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[lo+int64(4*i):]))
		}
		out[name] = t
	}
	return out, meta, nil
}

// ReadFile reads and verifies a file.
func ReadFile(path string) (map[string]*graph.Tensor, map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	t, m, err := Decode(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %v", path, err)
	}
	return t, m, nil
}
