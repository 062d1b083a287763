package fsx

import "os"

// Mapping is a file's bytes in memory. On Linux they are mapped read-only
// from the file, so they cost no memory of the process until read (the
// pages read are the file's, which the system may drop and read again);
// elsewhere they are read into memory. Copy reads parts of them from the
// file instead, leaving the mapping untouched. The bytes must never be
// written (a mapped page faults), and they stay valid until Close: a
// caller that keeps slices of them for the life of the process never
// closes it. The file must not be truncated or rewritten in place while
// it is mapped (the files of this project are replaced by renames, which
// leave the mapped file as it was).
type Mapping struct {
	data   []byte
	mapped bool
	f      *os.File // open until CloseFile, for Copy
}

// Map opens path and maps (or reads) its bytes. Errors are the os
// package's.
func Map(path string) (*Mapping, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return MapFile(f)
}

// MapFile maps (or reads) the bytes of an open file; f may be closed after.
func MapFile(f *os.File) (*Mapping, error) { return mapFile(f) }

// Bytes are the file's contents.
func (m *Mapping) Bytes() []byte { return m.data }

// Copy copies src, a part of the mapping's bytes, to dst (as long) by
// reading it from the file, which costs a mapped page neither a fault nor
// resident memory: what a program that reads each byte once wants. Bytes
// that are not part of the mapping, or read after CloseFile, are copied.
func (m *Mapping) Copy(dst, src []byte) error {
	if off, ok := m.offset(src); ok && m.f != nil {
		_, err := m.f.ReadAt(dst[:len(src)], off)
		return err
	}
	copy(dst, src)
	return nil
}

// CloseFile closes the file, keeping the bytes.
func (m *Mapping) CloseFile() {
	if m.f != nil {
		m.f.Close()
		m.f = nil
	}
}
