package export

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"unsafe"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/onnx"
)

// shallow returns a copy of m that shares every field's value with m (nested
// messages, lists and bytes are aliased, unknown fields copied). The caller
// replaces the fields it changes with new values and never mutates shared
// ones, so a large model is not duplicated to change a few tensors.
func shallow[M proto.Message](m M) M {
	src := m.ProtoReflect()
	dst := src.New()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		dst.Set(fd, v)
		return true
	})
	if u := src.GetUnknown(); len(u) > 0 {
		dst.SetUnknown(append(protoreflect.RawFields(nil), u...))
	}
	return dst.Interface().(M)
}

// marshal encodes a model the way the onnx package's round-trip test does, so
// an unchanged model gives back its own bytes.
func marshal(m *onnx.ModelProto) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("encoding the model: %v", err)
	}
	return b, nil
}

// form is how an initializer holds its data.
type form int

const (
	formRaw      form = iota // raw_data, little-endian
	formFloats               // float_data
	formExternal             // a range of an external data file
)

func (f form) String() string {
	return [...]string{"raw_data", "float_data", "external data"}[f]
}

func formOf(tp *onnx.TensorProto) form {
	switch {
	case tp.GetDataLocation() == onnx.TensorProto_EXTERNAL:
		return formExternal
	case tp.RawData != nil:
		return formRaw
	case len(tp.GetFloatData()) > 0:
		return formFloats
	}
	return formRaw
}

// checkReplacement checks that t may replace initializer tp's data: tp is a
// float32 tensor of t's shape stored in one of the forms export writes, and t
// is finite.
func checkReplacement(tp *onnx.TensorProto, t *graph.Tensor) error {
	name := tp.GetName()
	if dt := onnx.TensorProto_DataType(tp.GetDataType()); dt != onnx.TensorProto_FLOAT {
		return fmt.Errorf("initializer %q is %s; only float32 initializers can be replaced (export the model in float32)", name, dt)
	}
	if tp.Segment != nil {
		return fmt.Errorf("initializer %q is stored in segments, which export does not write", name)
	}
	if t == nil || t.DType != graph.Float32 {
		return fmt.Errorf("the new value of initializer %q is not a float32 tensor", name)
	}
	if !sameDims(tp.GetDims(), t.Shape) {
		return fmt.Errorf("the new value of initializer %q has shape %v, the initializer %v", name, t.Shape, tp.GetDims())
	}
	for _, v := range t.F {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("the new value of initializer %q holds NaN or infinite values", name)
		}
	}
	return nil
}

func sameDims(dims []int64, shape []int) bool {
	if len(dims) != len(shape) {
		return false
	}
	for i, d := range dims {
		if d != int64(shape[i]) {
			return false
		}
	}
	return true
}

// le32 is t's data as little-endian float32 bytes: on a little-endian CPU
// the tensor's own memory, not a copy, so that an export does not hold a
// model's weights twice before encoding it (the caller must not change t
// while the bytes are in use).
func le32(t *graph.Tensor) []byte {
	if littleEndian && len(t.F) > 0 {
		return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(t.F))), 4*len(t.F))
	}
	b := make([]byte, 4*len(t.F))
	for i, v := range t.F {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
	}
	return b
}

// littleEndian reports whether float32 values lie in memory as ONNX stores
// raw data.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// dataFile is the external data file written beside the output: the new
// data of the replaced initializers and the source's bytes of the untouched
// external ones, each at an aligned offset. It holds where the bytes come
// from, not the bytes, and writes them as a stream: a model of gigabytes of
// weights is not copied in memory to be written.
type dataFile struct {
	name     string // location, relative to the output's folder
	size     int64
	segments []segment
}

// segment is one tensor's bytes in the data file: t's floats, or length
// bytes of the file from at offset off.
type segment struct {
	at        int64
	t         *graph.Tensor
	from      string
	off, size int64
}

// dataAlign aligns each tensor's offset in the data file (enough for any
// vector load of the mapped file).
const dataAlign = 64

func (d *dataFile) add(s segment) (offset int64) {
	d.size = (d.size + dataAlign - 1) / dataAlign * dataAlign
	s.at = d.size
	d.segments = append(d.segments, s)
	d.size += s.size
	return s.at
}

// write writes the data file's bytes to w.
func (d *dataFile) write(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	pos := int64(0)
	buf := make([]byte, 1<<20)
	for _, s := range d.segments {
		if _, err := bw.Write(make([]byte, s.at-pos)); err != nil {
			return err
		}
		if s.t == nil {
			if err := copyRange(bw, s.from, s.off, s.size); err != nil {
				return err
			}
			pos = s.at + s.size
			continue
		}
		for f := s.t.F; len(f) > 0; {
			n := min(len(f), len(buf)/4)
			for i, v := range f[:n] {
				binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
			}
			if _, err := bw.Write(buf[:4*n]); err != nil {
				return err
			}
			f = f[n:]
		}
		pos = s.at + s.size
	}
	return bw.Flush()
}

// copyRange copies n bytes of the file at path from offset off to w.
func copyRange(w io.Writer, path string, off, n int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	got, err := io.Copy(w, io.NewSectionReader(f, off, n))
	if err == nil && got != n {
		err = fmt.Errorf("%s: %d bytes at offset %d, the file ends first", path, n, off)
	}
	return err
}

// relocated returns a copy of tp, an external initializer that keeps its
// data, whose bytes (read from its file under srcDir) go to d.
func relocated(tp *onnx.TensorProto, srcDir string, d *dataFile) (*onnx.TensorProto, error) {
	loc, off, n, err := onnximport.ExternalRange(tp)
	if err != nil {
		return nil, fmt.Errorf("initializer %q: %v", tp.GetName(), err)
	}
	rel, err := LocalPath(loc)
	if err != nil {
		return nil, fmt.Errorf("initializer %q: %v", tp.GetName(), err)
	}
	nt := shallow(tp)
	at := d.add(segment{from: filepath.Join(srcDir, rel), off: off, size: n})
	nt.ExternalData = externalEntries(d.name, at, n)
	return nt, nil
}

func externalEntries(loc string, off, n int64) []*onnx.StringStringEntryProto {
	return []*onnx.StringStringEntryProto{
		{Key: proto.String("location"), Value: proto.String(loc)},
		{Key: proto.String("offset"), Value: proto.String(strconv.FormatInt(off, 10))},
		{Key: proto.String("length"), Value: proto.String(strconv.FormatInt(n, 10))},
	}
}

// replaced returns a copy of tp holding t's data in tp's form; external data
// goes to d.
func replaced(tp *onnx.TensorProto, t *graph.Tensor, d *dataFile) *onnx.TensorProto {
	nt := shallow(tp)
	switch formOf(tp) {
	case formFloats:
		nt.FloatData = append([]float32(nil), t.F...)
	case formRaw:
		nt.RawData = le32(t)
	case formExternal:
		n := int64(4 * len(t.F))
		nt.ExternalData = externalEntries(d.name, d.add(segment{t: t, size: n}), n)
	}
	return nt
}

// externalLocations lists the external data files that the tensors of g
// read, initializers in skip excepted, in the order met; node attributes and
// subgraphs included.
func externalLocations(m *onnx.ModelProto, skip map[string]bool) []string {
	var out []string
	seen := map[string]bool{}
	add := func(tp *onnx.TensorProto) {
		if tp.GetDataLocation() != onnx.TensorProto_EXTERNAL {
			return
		}
		if loc := onnximport.ExternalLocation(tp); !seen[loc] {
			seen[loc] = true
			out = append(out, loc)
		}
	}
	var walkGraph func(g *onnx.GraphProto, top bool)
	walkNodes := func(nodes []*onnx.NodeProto) {
		for _, n := range nodes {
			for _, a := range n.GetAttribute() {
				if a.T != nil {
					add(a.T)
				}
				for _, t := range a.GetTensors() {
					add(t)
				}
				if a.G != nil {
					walkGraph(a.G, false)
				}
				for _, sg := range a.GetGraphs() {
					walkGraph(sg, false)
				}
			}
		}
	}
	walkGraph = func(g *onnx.GraphProto, top bool) {
		for _, tp := range g.GetInitializer() {
			if !(top && skip[tp.GetName()]) {
				add(tp)
			}
		}
		for _, sp := range g.GetSparseInitializer() {
			add(sp.GetValues())
			add(sp.GetIndices())
		}
		walkNodes(g.GetNode())
	}
	walkGraph(m.GetGraph(), true)
	for _, f := range m.GetFunctions() {
		walkNodes(f.GetNode())
	}
	return out
}

// LocalPath checks an external data location and returns it as a relative
// path: data must stay inside the model's folder.
func LocalPath(loc string) (string, error) {
	rel := filepath.Clean(filepath.FromSlash(loc))
	if loc == "" || !filepath.IsLocal(rel) {
		return "", fmt.Errorf("external data location %q is not a relative path inside the model's folder", loc)
	}
	return rel, nil
}
