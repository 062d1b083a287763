package onnximport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"

	"github.com/hyperat/hyperat/fsx"
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/onnx"
)

// dtypeOf maps an ONNX element type to the IR's. Integer types widen to int64 and
// double narrows to float32: the IR computes in float32 and int64 only.
func dtypeOf(t int32) (graph.DType, error) {
	switch onnx.TensorProto_DataType(t) {
	case onnx.TensorProto_FLOAT, onnx.TensorProto_DOUBLE, onnx.TensorProto_FLOAT16, onnx.TensorProto_BFLOAT16:
		return graph.Float32, nil
	case onnx.TensorProto_INT8, onnx.TensorProto_INT16, onnx.TensorProto_INT32, onnx.TensorProto_INT64,
		onnx.TensorProto_UINT8, onnx.TensorProto_UINT16, onnx.TensorProto_UINT32, onnx.TensorProto_UINT64:
		return graph.Int64, nil
	case onnx.TensorProto_BOOL:
		return graph.Bool, nil
	}
	return graph.Invalid, fmt.Errorf("element type %s is not supported", onnx.TensorProto_DataType(t))
}

// TensorFromProto decodes a TensorProto (raw_data or typed fields) into an IR
// tensor, with the element types the IR holds (see dtypeOf): what an
// initializer becomes on import. The conformance tests read ONNX's test data
// with it.
func TensorFromProto(tp *onnx.TensorProto) (*graph.Tensor, error) {
	if tp.GetDataLocation() == onnx.TensorProto_EXTERNAL {
		return nil, errors.New("external data is not supported here")
	}
	return tensorOf(tp, tp.GetRawData(), false, graph.NewTensor, fromRaw)
}

// tensor decodes an initializer or a constant of the model (raw_data, typed
// fields, or external data in a file of the model's folder).
func (c *ctx) tensor(tp *onnx.TensorProto) (*graph.Tensor, error) {
	raw, read := tp.GetRawData(), c.read
	external := tp.GetDataLocation() == onnx.TensorProto_EXTERNAL
	if external {
		_, n, err := dimsOf(tp)
		if err != nil {
			return nil, err
		}
		mp, b, err := c.external(tp, int64(n*elemSize(onnx.TensorProto_DataType(tp.GetDataType()))))
		if err != nil {
			return nil, err
		}
		raw, read = b, mp.Copy
	}
	if read == nil {
		return tensorOf(tp, raw, external, c.newTensor, fromRaw)
	}
	return tensorOf(tp, raw, external, c.newTensor, func(t *graph.Tensor, et onnx.TensorProto_DataType, raw []byte) error {
		if c.buf == nil {
			c.buf = make([]byte, readChunk)
		}
		size := elemSize(et)
		for off := 0; off < len(raw); off += readChunk {
			part := raw[off:min(off+readChunk, len(raw))]
			if err := read(c.buf, part); err != nil {
				return fmt.Errorf("reading the data: %v", err)
			}
			fromRaw(span(t, off/size, len(part)/size), et, c.buf[:len(part)])
		}
		return nil
	})
}

// reserve makes room for the float32 initializers of gp in one block of
// memory, which newTensor hands out: one allocation that the system can
// back with large pages (see largePages) instead of hundreds whose every
// 4 KiB page faults in separately, the larger part of the time an import
// of a large model takes.
func (c *ctx) reserve(gp *onnx.GraphProto) {
	n := 0
	for _, tp := range gp.GetInitializer() {
		if dt, err := dtypeOf(tp.GetDataType()); err == nil && dt == graph.Float32 {
			if _, k, err := dimsOf(tp); err == nil {
				n += k
			}
		}
	}
	if n >= minArena {
		c.arena = make([]float32, n)
		largePages(c.arena)
	}
}

// minArena is the size (in floats) from which reserve allocates a block.
const minArena = 1 << 20

// newTensor is graph.NewTensor, taking the data of float32 tensors from the
// reserved block while it lasts.
func (c *ctx) newTensor(dt graph.DType, shape []int) *graph.Tensor {
	n := graph.Numel(shape)
	if dt != graph.Float32 || n > len(c.arena) {
		return graph.NewTensor(dt, shape)
	}
	t := &graph.Tensor{DType: dt, Shape: append([]int{}, shape...), F: c.arena[:n:n]}
	c.arena = c.arena[n:]
	return t
}

// span is elements [at, at+n) of t, sharing its data.
func span(t *graph.Tensor, at, n int) *graph.Tensor {
	s := &graph.Tensor{DType: t.DType}
	switch t.DType {
	case graph.Float32:
		s.F = t.F[at : at+n]
	case graph.Int64:
		s.I = t.I[at : at+n]
	case graph.Bool:
		s.B = t.B[at : at+n]
	}
	return s
}

// readChunk is the size of the parts raw bytes are read in (a multiple of
// every element size).
const readChunk = 1 << 20

// tensorOf decodes a TensorProto whose raw bytes are raw (its raw_data, or
// the external data it names when external) with fill.
func tensorOf(tp *onnx.TensorProto, raw []byte, external bool, alloc func(graph.DType, []int) *graph.Tensor,
	fill func(*graph.Tensor, onnx.TensorProto_DataType, []byte) error) (*graph.Tensor, error) {
	dt, err := dtypeOf(tp.GetDataType())
	if err != nil {
		return nil, err
	}
	shape, n, err := dimsOf(tp)
	if err != nil {
		return nil, err
	}
	et := onnx.TensorProto_DataType(tp.GetDataType())
	size := elemSize(et)
	// check the amount of data against the dims before allocating anything
	switch {
	case raw != nil || external:
		if len(raw) != n*size {
			return nil, fmt.Errorf("raw data has %d bytes, want %d for %v of %s", len(raw), n*size, shape, et)
		}
	default:
		if got := typedLen(tp, et); got != n {
			return nil, fmt.Errorf("has %d values, want %d for shape %v", got, n, shape)
		}
	}
	t := alloc(dt, shape)
	if raw != nil || external {
		if err := fill(t, et, raw); err != nil {
			return nil, err
		}
		return t, nil
	}
	if got := fromTyped(t, tp, et, n); got != n {
		return nil, fmt.Errorf("has %d values, want %d for shape %v", got, n, shape)
	}
	return t, nil
}

// dimsOf is a TensorProto's shape and number of elements, checked.
func dimsOf(tp *onnx.TensorProto) ([]int, int, error) {
	shape := make([]int, len(tp.GetDims()))
	n := 1
	for i, d := range tp.GetDims() {
		if d < 0 || d > math.MaxInt32 {
			return nil, 0, fmt.Errorf("invalid dimension %d", d)
		}
		shape[i] = int(d)
		n *= int(d)
		if n > 1<<30 {
			return nil, 0, fmt.Errorf("tensor too large (%v)", tp.GetDims())
		}
	}
	return shape, n, nil
}

// fromRaw decodes little-endian values of type et, as many as t holds,
// from raw into t. One loop per type: this runs over every weight of a model.
func fromRaw(t *graph.Tensor, et onnx.TensorProto_DataType, raw []byte) error {
	le := binary.LittleEndian
	switch et {
	case onnx.TensorProto_FLOAT:
		for i := range t.F {
			t.F[i] = math.Float32frombits(le.Uint32(raw[4*i:]))
		}
	case onnx.TensorProto_DOUBLE:
		for i := range t.F {
			t.F[i] = float32(math.Float64frombits(le.Uint64(raw[8*i:])))
		}
	case onnx.TensorProto_FLOAT16:
		for i := range t.F {
			t.F[i] = halfToFloat(le.Uint16(raw[2*i:]))
		}
	case onnx.TensorProto_BFLOAT16:
		for i := range t.F {
			t.F[i] = math.Float32frombits(uint32(le.Uint16(raw[2*i:])) << 16)
		}
	case onnx.TensorProto_INT64, onnx.TensorProto_UINT64:
		for i := range t.I {
			t.I[i] = int64(le.Uint64(raw[8*i:]))
		}
	case onnx.TensorProto_INT32:
		for i := range t.I {
			t.I[i] = int64(int32(le.Uint32(raw[4*i:])))
		}
	case onnx.TensorProto_UINT32:
		for i := range t.I {
			t.I[i] = int64(le.Uint32(raw[4*i:]))
		}
	case onnx.TensorProto_INT16:
		for i := range t.I {
			t.I[i] = int64(int16(le.Uint16(raw[2*i:])))
		}
	case onnx.TensorProto_UINT16:
		for i := range t.I {
			t.I[i] = int64(le.Uint16(raw[2*i:]))
		}
	case onnx.TensorProto_INT8:
		for i := range t.I {
			t.I[i] = int64(int8(raw[i]))
		}
	case onnx.TensorProto_UINT8:
		for i := range t.I {
			t.I[i] = int64(raw[i])
		}
	case onnx.TensorProto_BOOL:
		for i := range t.B {
			t.B[i] = raw[i] != 0
		}
	}
	return nil
}

// fromTyped decodes the typed field of tp, as the spec assigns them per
// element type, into t (at most n values) and returns how many it holds.
func fromTyped(t *graph.Tensor, tp *onnx.TensorProto, et onnx.TensorProto_DataType, n int) int {
	var got int
	switch et {
	case onnx.TensorProto_FLOAT:
		got = copy(t.F, tp.GetFloatData())
		got = max(got, len(tp.GetFloatData()))
	case onnx.TensorProto_DOUBLE:
		for i, v := range tp.GetDoubleData() {
			if i < n {
				t.F[i] = float32(v)
			}
		}
		got = len(tp.GetDoubleData())
	case onnx.TensorProto_INT64:
		got = copy(t.I, tp.GetInt64Data())
		got = max(got, len(tp.GetInt64Data()))
	case onnx.TensorProto_UINT32, onnx.TensorProto_UINT64:
		for i, v := range tp.GetUint64Data() {
			if i < n {
				t.I[i] = int64(v)
			}
		}
		got = len(tp.GetUint64Data())
	case onnx.TensorProto_FLOAT16, onnx.TensorProto_BFLOAT16:
		for i, v := range tp.GetInt32Data() {
			if i < n {
				if et == onnx.TensorProto_FLOAT16 {
					t.F[i] = halfToFloat(uint16(v))
				} else {
					t.F[i] = math.Float32frombits(uint32(uint16(v)) << 16)
				}
			}
		}
		got = len(tp.GetInt32Data())
	default: // int32 and smaller, bool
		for i, v := range tp.GetInt32Data() {
			if i < n {
				if t.DType == graph.Bool {
					t.B[i] = v != 0
				} else {
					t.I[i] = int64(v)
				}
			}
		}
		got = len(tp.GetInt32Data())
	}
	return got
}

// typedLen is the number of values a TensorProto holds in its typed field.
func typedLen(tp *onnx.TensorProto, et onnx.TensorProto_DataType) int {
	switch et {
	case onnx.TensorProto_FLOAT:
		return len(tp.GetFloatData())
	case onnx.TensorProto_DOUBLE:
		return len(tp.GetDoubleData())
	case onnx.TensorProto_INT64:
		return len(tp.GetInt64Data())
	case onnx.TensorProto_UINT32, onnx.TensorProto_UINT64:
		return len(tp.GetUint64Data())
	}
	return len(tp.GetInt32Data())
}

func elemSize(t onnx.TensorProto_DataType) int {
	switch t {
	case onnx.TensorProto_DOUBLE, onnx.TensorProto_INT64, onnx.TensorProto_UINT64:
		return 8
	case onnx.TensorProto_FLOAT, onnx.TensorProto_INT32, onnx.TensorProto_UINT32:
		return 4
	case onnx.TensorProto_FLOAT16, onnx.TensorProto_BFLOAT16, onnx.TensorProto_INT16, onnx.TensorProto_UINT16:
		return 2
	}
	return 1
}

// halfToFloat converts IEEE 754 binary16 to float32.
func halfToFloat(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h) & 0x3ff
	switch {
	case exp == 0 && frac == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal
		f := float32(frac) / 1024 * float32(math.Pow(2, -14))
		if sign != 0 {
			f = -f
		}
		return f
	case exp == 31:
		return math.Float32frombits(sign | 0xff<<23 | frac<<13)
	}
	return math.Float32frombits(sign | (exp+112)<<23 | frac<<13)
}

// ExternalLocation returns the external data file of an initializer, or "".
func ExternalLocation(tp *onnx.TensorProto) string {
	for _, kv := range tp.GetExternalData() {
		if kv.GetKey() == "location" {
			return kv.GetValue()
		}
	}
	return ""
}

// ExternalRange is where an external tensor's bytes are: the file (its
// location as written), the offset and the length (when the entry gives
// none, the bytes its dims and type take).
func ExternalRange(tp *onnx.TensorProto) (loc string, offset, length int64, err error) {
	length = -1
	for _, kv := range tp.GetExternalData() {
		switch kv.GetKey() {
		case "location":
			loc = kv.GetValue()
		case "offset":
			offset, err = strconv.ParseInt(kv.GetValue(), 10, 64)
		case "length":
			length, err = strconv.ParseInt(kv.GetValue(), 10, 64)
		}
		if err != nil {
			return "", 0, 0, fmt.Errorf("external data %s: %v", kv.GetKey(), err)
		}
	}
	if length < 0 {
		_, n, err := dimsOf(tp)
		if err != nil {
			return "", 0, 0, err
		}
		length = int64(n * elemSize(onnx.TensorProto_DataType(tp.GetDataType())))
	}
	return loc, offset, length, nil
}

// external returns the bytes of an initializer stored outside the model
// file (want of them, from the mapping of its data file, which is returned
// too). The location must name a file inside the model's folder: a path
// that leaves it, by "..", from the root, or through a symbolic link, is
// refused.
func (c *ctx) external(tp *onnx.TensorProto, want int64) (*fsx.Mapping, []byte, error) {
	loc, offset, length, err := ExternalRange(tp)
	if err != nil {
		return nil, nil, err
	}
	if c.dir == "" {
		return nil, nil, errors.New("external data is not supported here")
	}
	mp, err := c.dataFile(loc)
	if err != nil {
		return nil, nil, err
	}
	size := int64(len(mp.Bytes()))
	if offset < 0 || length < 0 || offset > size || length > size-offset {
		return nil, nil, fmt.Errorf("external data file %q is too short (%d bytes) for offset %d length %d", loc, size, offset, length)
	}
	if length != want {
		return nil, nil, fmt.Errorf("external data has %d bytes, want %d", length, want)
	}
	return mp, mp.Bytes()[offset : offset+length], nil
}

// dataFile maps the external data file at loc, once per import.
func (c *ctx) dataFile(loc string) (*fsx.Mapping, error) {
	if mp, ok := c.files[loc]; ok {
		return mp, nil
	}
	clean := filepath.Clean(filepath.FromSlash(loc))
	if loc == "" || !filepath.IsLocal(clean) {
		return nil, fmt.Errorf("external data location %q must be a relative path inside the model's folder", loc)
	}
	// open it through the folder, so that no link leads outside it
	root, err := os.OpenRoot(c.dir)
	if err != nil {
		return nil, fmt.Errorf("external data file %q: %v", loc, fsx.Bare(err))
	}
	defer root.Close()
	f, err := root.Open(clean)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("external data file %q not found next to the model", loc)
	case err != nil: // a link that leads outside the folder: "path escapes from parent"
		return nil, fmt.Errorf("external data file %q: %v (external data must be inside the model's folder)", loc, fsx.Bare(err))
	}
	mp, err := fsx.MapFile(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("external data file %q: %v", loc, fsx.Bare(err))
	}
	c.files[loc] = mp
	return mp, nil
}

// closeFiles unmaps the external data files: the tensors read from them
// are copies.
func (c *ctx) closeFiles() {
	for _, mp := range c.files {
		mp.Close()
	}
}
