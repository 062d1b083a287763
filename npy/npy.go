// Package npy reads and writes numpy's .npy format (version 1 to 3) for float32,
// float64 (read as float32), int64 and int32 (read as int64) arrays in C order.
package npy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/hyperat/hyperat/fsx"
	"github.com/hyperat/hyperat/graph"
)

var magic = []byte("\x93NUMPY")

// maxElements bounds what a header may claim, so a corrupt file cannot make us
// allocate without limit.
const maxElements = 1 << 31

// Read decodes an .npy stream.
func Read(r io.Reader) (*graph.Tensor, error) {
	br := bufio.NewReader(r)
	head := make([]byte, 8)
	if _, err := io.ReadFull(br, head); err != nil {
		return nil, errors.New("not an .npy file (too short)")
	}
	if !bytes.Equal(head[:6], magic) {
		return nil, errors.New("not an .npy file (bad magic)")
	}
	var hlen int
	switch head[6] {
	case 1:
		var b [2]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return nil, errors.New("truncated .npy header")
		}
		hlen = int(binary.LittleEndian.Uint16(b[:]))
	case 2, 3:
		var b [4]byte
		if _, err := io.ReadFull(br, b[:]); err != nil {
			return nil, errors.New("truncated .npy header")
		}
		hlen = int(binary.LittleEndian.Uint32(b[:]))
		if hlen > 1<<20 {
			return nil, errors.New(".npy header too large")
		}
	default:
		return nil, fmt.Errorf("unsupported .npy version %d", head[6])
	}
	hdr := make([]byte, hlen)
	if _, err := io.ReadFull(br, hdr); err != nil {
		return nil, errors.New("truncated .npy header")
	}
	descr, fortran, shape, err := parseHeader(string(hdr))
	if err != nil {
		return nil, err
	}
	if fortran {
		return nil, errors.New(".npy arrays in Fortran order are not supported; save a C-contiguous array")
	}
	n := 1
	for _, d := range shape {
		if d < 0 || (d > 0 && n > maxElements/d) {
			return nil, fmt.Errorf(".npy shape %v is too large", shape)
		}
		n *= d
	}
	var size int
	var dt graph.DType
	switch descr {
	case "<f4", "|f4":
		size, dt = 4, graph.Float32
	case "<f8":
		size, dt = 8, graph.Float32
	case "<i8":
		size, dt = 8, graph.Int64
	case "<i4":
		size, dt = 4, graph.Int64
	default:
		return nil, fmt.Errorf(".npy dtype %q is not supported (want float32, float64, int64 or int32, little endian)", descr)
	}
	// read in chunks, so a header claiming more than the file holds cannot
	// make us allocate it
	want := n * size
	raw := make([]byte, 0, min(want, 1<<20))
	chunk := make([]byte, 1<<20)
	for len(raw) < want {
		k, err := io.ReadFull(br, chunk[:min(len(chunk), want-len(raw))])
		raw = append(raw, chunk[:k]...)
		if err != nil {
			return nil, fmt.Errorf("truncated .npy data: want %d bytes for shape %v, got %d", want, shape, len(raw))
		}
	}
	t := graph.NewTensor(dt, shape)
	for i := 0; i < n; i++ {
		b := raw[i*size:]
		switch descr {
		case "<f4", "|f4":
			t.F[i] = math.Float32frombits(binary.LittleEndian.Uint32(b))
		case "<f8":
			t.F[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(b)))
		case "<i8":
			t.I[i] = int64(binary.LittleEndian.Uint64(b))
		case "<i4":
			t.I[i] = int64(int32(binary.LittleEndian.Uint32(b)))
		}
	}
	return t, nil
}

var (
	reDescr = regexp.MustCompile(`'descr'\s*:\s*'([^']*)'`)
	reOrder = regexp.MustCompile(`'fortran_order'\s*:\s*(True|False)`)
	reShape = regexp.MustCompile(`'shape'\s*:\s*\(([^)]*)\)`)
)

func parseHeader(h string) (descr string, fortran bool, shape []int, err error) {
	d, o, s := reDescr.FindStringSubmatch(h), reOrder.FindStringSubmatch(h), reShape.FindStringSubmatch(h)
	if d == nil || o == nil || s == nil {
		return "", false, nil, errors.New("malformed .npy header")
	}
	shape = []int{}
	for _, part := range strings.Split(s[1], ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		v, err := strconv.Atoi(strings.TrimSuffix(part, "L"))
		if err != nil || v < 0 {
			return "", false, nil, fmt.Errorf("malformed .npy shape %q", s[1])
		}
		shape = append(shape, v)
	}
	return d[1], o[1] == "True", shape, nil
}

// ReadFile reads an .npy file.
func ReadFile(path string) (*graph.Tensor, error) {
	f, err := os.Open(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return nil, fmt.Errorf("%s: %v", path, pe.Err)
		}
		return nil, err
	}
	defer f.Close()
	t, err := Read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	return t, nil
}

// Write encodes t as version 1 .npy (float32 as <f4, int64 as <i8).
func Write(w io.Writer, t *graph.Tensor) error {
	var descr string
	switch t.DType {
	case graph.Float32:
		descr = "<f4"
	case graph.Int64:
		descr = "<i8"
	default:
		return fmt.Errorf("cannot write %s as .npy", t.DType)
	}
	dims := make([]string, len(t.Shape))
	for i, d := range t.Shape {
		dims[i] = strconv.Itoa(d)
	}
	shape := strings.Join(dims, ", ")
	if len(t.Shape) == 1 {
		shape += ","
	}
	h := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, shape)
	pad := 64 - (10+len(h)+1)%64
	if pad == 64 {
		pad = 0
	}
	h += strings.Repeat(" ", pad) + "\n"
	buf := bytes.NewBuffer(nil)
	buf.Write(magic)
	buf.Write([]byte{1, 0})
	binary.Write(buf, binary.LittleEndian, uint16(len(h)))
	buf.WriteString(h)
	b := make([]byte, 8)
	switch t.DType {
	case graph.Float32:
		for _, v := range t.F {
			binary.LittleEndian.PutUint32(b, math.Float32bits(v))
			buf.Write(b[:4])
		}
	case graph.Int64:
		for _, v := range t.I {
			binary.LittleEndian.PutUint64(b, uint64(v))
			buf.Write(b)
		}
	}
	_, err := w.Write(buf.Bytes())
	return err
}

// WriteFile writes t atomically: a temporary file in the same folder, then rename.
func WriteFile(path string, t *graph.Tensor) error {
	var buf bytes.Buffer
	if err := Write(&buf, t); err != nil {
		return err
	}
	return fsx.WriteFile(path, buf.Bytes())
}
