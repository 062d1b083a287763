package data

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// IDX files (the MNIST family) start with two zero bytes, an element-type
// byte (0x08 for unsigned bytes, the only type read here), the number of
// dimensions, then each dimension as a big-endian uint32, then the elements in
// row-major order. Images are N×H×W, labels N.

var idxTypeNames = map[byte]string{
	0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16",
	0x0C: "int32", 0x0D: "float32", 0x0E: "float64",
}

// readIDX reads an IDX file of unsigned bytes with ndim dimensions from r,
// gzipped or not (told by its first bytes, not by its name). size is r's byte
// count when known, or -1. name is used in errors.
func readIDX(r io.Reader, size int64, ndim int, name string) (dims []int, body []byte, err error) {
	r, size, gz, err := maybeGunzip(r, size)
	if err != nil {
		return nil, nil, wrapf(ErrFormat, err, name, "corrupt gzip header: %v", err)
	}
	what := "file"
	if gz {
		what = "decompressed file"
	}
	var head [4]byte
	if _, err := io.ReadFull(r, head[:]); err != nil {
		return nil, nil, idxReadErr(name, err, "too short for an IDX header")
	}
	if head[0] != 0 || head[1] != 0 {
		return nil, nil, errorf(ErrFormat, name, "not an IDX file (starts with bytes %02x %02x %02x %02x, expected 00 00 08 %02x)",
			head[0], head[1], head[2], head[3], ndim)
	}
	if head[2] != 0x08 {
		t, ok := idxTypeNames[head[2]]
		if !ok {
			t = fmt.Sprintf("unknown type 0x%02x", head[2])
		}
		return nil, nil, errorf(ErrFormat, name, "IDX elements are %s, expected unsigned bytes (0x08)", t)
	}
	if int(head[3]) != ndim {
		return nil, nil, errorf(ErrFormat, name, "IDX file has %d dimension%s, expected %d (%s)", head[3], plural(int(head[3])), ndim, idxShapeName(ndim))
	}
	raw := make([]byte, 4*ndim)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, nil, idxReadErr(name, err, "truncated IDX header")
	}
	dims = make([]int, ndim)
	total := int64(1)
	for i := range dims {
		d := int64(binary.BigEndian.Uint32(raw[4*i:]))
		switch {
		case d == 0:
			return nil, nil, errorf(ErrFormat, name, "IDX dimension %d is 0: the file holds no data", i)
		case i > 0 && d > MaxSide:
			return nil, nil, errorf(ErrFormat, name, "IDX image side of %d exceeds the %d accepted", d, MaxSide)
		}
		total *= d // cannot overflow: at most 2^32 * MaxSide^2 < 2^60
		dims[i] = int(d)
	}
	if ndim == 3 && int64(dims[1])*int64(dims[2]) > MaxPixels {
		return nil, nil, errorf(ErrFormat, name, "IDX images of %dx%d exceed the %d pixels accepted", dims[1], dims[2], MaxPixels)
	}
	if total > maxPayload {
		return nil, nil, errorf(ErrFormat, name, "IDX header says %s = %d bytes, more than the %d accepted", idxDims(dims), total, int64(maxPayload))
	}
	headerLen := int64(4 + 4*ndim)
	if size >= 0 && size != headerLen+total {
		return nil, nil, errorf(ErrFormat, name, "IDX header says %s (%d bytes of data) but the %s has %d bytes after the header",
			idxDims(dims), total, what, size-headerLen)
	}
	body, err = readN(r, total, size >= 0)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, nil, errorf(ErrFormat, name, "truncated: IDX header says %s (%d bytes of data), the %s ends after %d",
				idxDims(dims), total, what, len(body))
		}
		return nil, nil, idxReadErr(name, err, "cannot read")
	}
	if err := atEOF(r); err != nil {
		if err == errTrailing {
			return nil, nil, errorf(ErrFormat, name, "the %s is longer than its IDX header says (%s, %d bytes of data)", what, idxDims(dims), total)
		}
		return nil, nil, idxReadErr(name, err, "cannot read")
	}
	return dims, body, nil
}

// idxReadErr reports a read failure: truncation, corrupt gzip data, or an I/O error.
func idxReadErr(name string, err error, context string) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return errorf(ErrFormat, name, "%s (the file ends early)", context)
	}
	return wrapf(ErrFormat, err, name, "%s: %v", context, err)
}

func idxShapeName(ndim int) string {
	if ndim == 1 {
		return "labels: N"
	}
	return "images: N×H×W"
}

func idxDims(dims []int) string {
	s := make([]string, len(dims))
	for i, d := range dims {
		s[i] = fmt.Sprint(d)
	}
	return strings.Join(s, "×")
}

// idxSplit is one split of an IDX dataset in memory.
type idxSplit struct {
	n, h, w int
	pix     []byte // n×h×w
	labels  []int64
}

// parseIDXPair reads an images file and a labels file and checks they agree.
func parseIDXPair(images io.Reader, imagesSize int64, imagesName string, labels io.Reader, labelsSize int64, labelsName string) (*idxSplit, error) {
	dims, pix, err := readIDX(images, imagesSize, 3, imagesName)
	if err != nil {
		return nil, err
	}
	ldims, lab, err := readIDX(labels, labelsSize, 1, labelsName)
	if err != nil {
		return nil, err
	}
	if dims[0] != ldims[0] {
		return nil, errorf(ErrFormat, imagesName, "holds %d images but %s holds %d labels", dims[0], labelsName, ldims[0])
	}
	s := &idxSplit{n: dims[0], h: dims[1], w: dims[2], pix: pix, labels: make([]int64, len(lab))}
	for i, l := range lab {
		s.labels[i] = int64(l)
	}
	return s, nil
}

// loadIDXPair reads a split from its two files.
func loadIDXPair(imagesPath, labelsPath string) (*idxSplit, error) {
	fi, si, err := openSized(imagesPath)
	if err != nil {
		return nil, err
	}
	defer fi.Close()
	fl, sl, err := openSized(labelsPath)
	if err != nil {
		return nil, err
	}
	defer fl.Close()
	return parseIDXPair(fi, si, imagesPath, fl, sl, labelsPath)
}

// readIDXLabels reads only a labels file (used to count classes over both splits).
func readIDXLabels(path string) ([]byte, error) {
	f, size, err := openSized(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	_, lab, err := readIDX(f, size, 1, path)
	return lab, err
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
