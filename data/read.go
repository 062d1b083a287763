package data

import (
	"bufio"
	"compress/gzip"
	"errors"
	"io"
	"os"
)

// Limits that keep a corrupt header from making us allocate absurd amounts.
const (
	// MaxSide is the largest image height or width accepted.
	MaxSide = 16384
	// MaxPixels is the largest pixel count (height times width) of one image.
	MaxPixels = 1 << 26
	// maxPayload is the largest pixel payload of one dataset file (4 GiB;
	// EMNIST's largest file holds about 0.55 GiB).
	maxPayload = 4 << 30
)

// gzipMagic starts every gzip stream.
var gzipMagic = [2]byte{0x1f, 0x8b}

// maybeGunzip returns a reader of r's content, decompressed when it starts with
// the gzip magic bytes, whatever its name. size is r's byte count when known, or
// -1; the returned size is the content's, or -1 when it is compressed.
func maybeGunzip(r io.Reader, size int64) (io.Reader, int64, bool, error) {
	bufSize := 1 << 16
	if size >= 0 {
		bufSize = int(min(size, 1<<16))
	}
	br := bufio.NewReaderSize(r, bufSize)
	head, _ := br.Peek(2)
	if len(head) == 2 && head[0] == gzipMagic[0] && head[1] == gzipMagic[1] {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, 0, true, err
		}
		return zr, -1, true, nil
	}
	return br, size, false, nil
}

// readN reads exactly n bytes from r. Memory grows with the bytes actually read
// (at most twice them), never with n alone, so a header that promises more than
// the stream holds cannot force a large allocation. Pass known=true when the
// stream is known to hold n bytes (checked against the file size): then one
// buffer of n bytes is allocated at once.
func readN(r io.Reader, n int64, known bool) ([]byte, error) {
	if n <= 0 {
		return nil, nil
	}
	size := min(n, 1<<20)
	if known {
		size = n
	}
	buf := make([]byte, size)
	var got int64
	for {
		m, err := io.ReadFull(r, buf[got:])
		got += int64(m)
		if err != nil {
			return buf[:got], err
		}
		if got == n {
			return buf, nil
		}
		bigger := make([]byte, min(n, 2*int64(len(buf))))
		copy(bigger, buf)
		buf = bigger
	}
}

// atEOF checks that r holds nothing more. Reading a gzip stream to its end also
// verifies its checksum.
func atEOF(r io.Reader) error {
	var one [1]byte
	n, err := io.ReadFull(r, one[:])
	if n > 0 {
		return errTrailing
	}
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}

var errTrailing = errors.New("trailing data")

// fileSize is the size of a regular file, or an error naming it.
func openSized(path string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, wrapf(ErrNoDataset, err, path, "cannot open: %v", unwrapPathErr(err))
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, wrapf(ErrNoDataset, err, path, "cannot read: %v", unwrapPathErr(err))
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, errorf(ErrFormat, path, "not a regular file")
	}
	return f, st.Size(), nil
}

// unwrapPathErr drops the path from an *os.PathError (our messages name it already).
func unwrapPathErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
