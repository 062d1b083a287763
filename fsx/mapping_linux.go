package fsx

import (
	"io"
	"os"
	"syscall"
	"unsafe"
)

func mapFile(f *os.File) (*Mapping, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() || st.Size() == 0 || int64(int(st.Size())) != st.Size() {
		// nothing to map (an empty file, a pipe): read what there is
		data, err := io.ReadAll(f)
		return &Mapping{data: data}, err
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(st.Size()), syscall.PROT_READ, syscall.MAP_PRIVATE)
	if err != nil {
		// a file system that cannot map files: read it
		data, err := io.ReadAll(io.NewSectionReader(f, 0, st.Size()))
		return &Mapping{data: data}, err
	}
	m := &Mapping{data: data, mapped: true}
	// a file of its own for Copy, which the caller's may outlive
	if fd, err := syscall.Dup(int(f.Fd())); err == nil {
		m.f = os.NewFile(uintptr(fd), f.Name())
	}
	return m, nil
}

// offset is where b starts in the mapping, when b is part of it.
func (m *Mapping) offset(b []byte) (int64, bool) {
	if !m.mapped || len(b) == 0 || len(m.data) == 0 {
		return 0, false
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(m.data)))
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	if lo < base || lo-base > uintptr(len(m.data)) || uintptr(len(b)) > uintptr(len(m.data))-(lo-base) {
		return 0, false
	}
	return int64(lo - base), true
}

// Close closes the file and unmaps the bytes; no slice of them may be used
// after.
func (m *Mapping) Close() error {
	m.CloseFile()
	if !m.mapped || m.data == nil {
		m.data = nil
		return nil
	}
	err := syscall.Munmap(m.data)
	m.data = nil
	return err
}
