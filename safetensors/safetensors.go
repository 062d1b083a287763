// Package safetensors reads and writes the safetensors format (an 8-byte
// little-endian header length, a JSON header mapping names to dtype, shape
// and byte offsets, then the raw little-endian data) for float32 tensors.
// Files carry a SHA-256 of their data in the header's metadata, verified on
// load, so a damaged checkpoint is refused instead of silently used.
package safetensors

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
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
	var buf bytes.Buffer
	if err := write(&buf, tensors, meta); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// WriteFile encodes and writes atomically, as a stream: the tensors are
// read twice (for the checksum the header holds, then for the data), never
// copied whole, so a file of gigabytes costs no memory beyond the tensors.
func WriteFile(path string, tensors map[string]*graph.Tensor, meta map[string]string) error {
	for n, t := range tensors {
		if t.DType != graph.Float32 {
			return fmt.Errorf("tensor %s: only float32 is written", n)
		}
	}
	return fsx.WriteFileFunc(path, func(w io.Writer) error { return write(w, tensors, meta) })
}

// write writes the file to w: the header (offsets, metadata and the
// checksum of the data), then the data.
func write(w io.Writer, tensors map[string]*graph.Tensor, meta map[string]string) error {
	names := make([]string, 0, len(tensors))
	for n := range tensors {
		names = append(names, n)
	}
	sort.Strings(names)
	header := map[string]any{}
	sum := sha256.New()
	size := int64(0)
	for _, n := range names {
		t := tensors[n]
		if t.DType != graph.Float32 {
			return fmt.Errorf("tensor %s: only float32 is written", n)
		}
		if err := writeFloats(sum, t.F); err != nil {
			return err
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		header[n] = entry{DType: "F32", Shape: shape, Offsets: [2]int64{size, size + int64(4*len(t.F))}}
		size += int64(4 * len(t.F))
	}
	md := map[string]string{}
	for k, v := range meta {
		md[k] = v
	}
	md[checksumKey] = hex.EncodeToString(sum.Sum(nil))
	header["__metadata__"] = md
	h, err := json.Marshal(header)
	if err != nil {
		return err
	}
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	binary.Write(bw, binary.LittleEndian, uint64(len(h)))
	bw.Write(h)
	for _, n := range names {
		if err := writeFloats(bw, tensors[n].F); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// writeFloats writes f to w as little-endian bytes, a part at a time.
func writeFloats(w io.Writer, f []float32) error {
	var buf [4096]byte
	for len(f) > 0 {
		n := min(len(f), len(buf)/4)
		for i, v := range f[:n] {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
		}
		if _, err := w.Write(buf[:4*n]); err != nil {
			return err
		}
		f = f[n:]
	}
	return nil
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

// ReadFile reads and verifies a file. The file is mapped, not read into
// memory (fsx.Map): its pages are the file's, which the system may drop, and
// only the tensors are the process's.
func ReadFile(path string) (map[string]*graph.Tensor, map[string]string, error) {
	mp, err := fsx.Map(path)
	if err != nil {
		return nil, nil, err
	}
	defer mp.Close() // the tensors are copies
	t, m, err := Decode(mp.Bytes())
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %v", path, err)
	}
	return t, m, nil
}
