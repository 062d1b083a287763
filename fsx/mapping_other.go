//go:build !linux

package fsx

import (
	"io"
	"os"
)

func mapFile(f *os.File) (*Mapping, error) {
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	return &Mapping{data: data}, nil
}

// offset: bytes that are read, not mapped, are copied.
func (m *Mapping) offset(b []byte) (int64, bool) { return 0, false }

// Close drops the bytes.
func (m *Mapping) Close() error {
	m.data = nil
	return nil
}
