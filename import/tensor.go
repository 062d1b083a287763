package onnximport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

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
	return tensorFrom(tp, "")
}

// tensorFrom decodes a TensorProto (raw_data, typed fields, or external data
// relative to dir) into an IR tensor.
func tensorFrom(tp *onnx.TensorProto, dir string) (*graph.Tensor, error) {
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
	external := tp.GetDataLocation() == onnx.TensorProto_EXTERNAL
	raw := tp.GetRawData()
	// check the amount of data against the dims before allocating anything
	switch {
	case external:
		raw, err = readExternal(tp, dir, int64(n*size))
		if err != nil {
			return nil, err
		}
	case raw != nil:
		if len(raw) != n*size {
			return nil, fmt.Errorf("raw data has %d bytes, want %d for %v of %s", len(raw), n*size, shape, et)
		}
	default:
		if got := typedLen(tp, et); got != n {
			return nil, fmt.Errorf("has %d values, want %d for shape %v", got, n, shape)
		}
	}
	t := graph.NewTensor(dt, shape)
	if raw != nil || external {
		fromRaw(t, et, raw, n, size)
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

// fromRaw decodes n little-endian values of type et, size bytes each, into t.
func fromRaw(t *graph.Tensor, et onnx.TensorProto_DataType, raw []byte, n, size int) {
	for i := 0; i < n; i++ {
		b := raw[i*size:]
		switch et {
		case onnx.TensorProto_FLOAT:
			t.F[i] = math.Float32frombits(binary.LittleEndian.Uint32(b))
		case onnx.TensorProto_DOUBLE:
			t.F[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(b)))
		case onnx.TensorProto_FLOAT16:
			t.F[i] = halfToFloat(binary.LittleEndian.Uint16(b))
		case onnx.TensorProto_BFLOAT16:
			t.F[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(b)) << 16)
		case onnx.TensorProto_INT64:
			t.I[i] = int64(binary.LittleEndian.Uint64(b))
		case onnx.TensorProto_UINT64:
			t.I[i] = int64(binary.LittleEndian.Uint64(b))
		case onnx.TensorProto_INT32:
			t.I[i] = int64(int32(binary.LittleEndian.Uint32(b)))
		case onnx.TensorProto_UINT32:
			t.I[i] = int64(binary.LittleEndian.Uint32(b))
		case onnx.TensorProto_INT16:
			t.I[i] = int64(int16(binary.LittleEndian.Uint16(b)))
		case onnx.TensorProto_UINT16:
			t.I[i] = int64(binary.LittleEndian.Uint16(b))
		case onnx.TensorProto_INT8:
			t.I[i] = int64(int8(b[0]))
		case onnx.TensorProto_UINT8:
			t.I[i] = int64(b[0])
		case onnx.TensorProto_BOOL:
			t.B[i] = b[0] != 0
		}
	}
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

// readExternal reads an initializer stored outside the model file. The location
// must stay inside the model's folder.
func readExternal(tp *onnx.TensorProto, dir string, want int64) ([]byte, error) {
	var loc string
	offset, length := int64(0), int64(-1)
	for _, kv := range tp.GetExternalData() {
		var err error
		switch kv.GetKey() {
		case "location":
			loc = kv.GetValue()
		case "offset":
			offset, err = strconv.ParseInt(kv.GetValue(), 10, 64)
		case "length":
			length, err = strconv.ParseInt(kv.GetValue(), 10, 64)
		}
		if err != nil {
			return nil, fmt.Errorf("external data %s: %v", kv.GetKey(), err)
		}
	}
	clean := filepath.Clean(filepath.FromSlash(loc))
	if loc == "" || filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
		return nil, fmt.Errorf("external data location %q must be a relative path inside the model's folder", loc)
	}
	f, err := os.Open(filepath.Join(dir, clean))
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("external data file %q not found next to the model", loc)
		}
		return nil, fmt.Errorf("external data file %q: %v", loc, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if length < 0 {
		length = want // no length: the dims say how much
	}
	if offset < 0 || length < 0 || offset+length > st.Size() {
		return nil, fmt.Errorf("external data file %q is too short (%d bytes) for offset %d length %d", loc, st.Size(), offset, length)
	}
	if length != want {
		return nil, fmt.Errorf("external data has %d bytes, want %d", length, want)
	}
	buf := make([]byte, length)
	if _, err := f.ReadAt(buf, offset); err != nil {
		return nil, fmt.Errorf("external data file %q: %v", loc, err)
	}
	return buf, nil
}
