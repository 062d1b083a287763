package fsx

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// A mapping holds the file's bytes; Copy reads any part of them (from the
// file where they are mapped), before and after CloseFile, and copies
// bytes that are not part of them.
func TestMapping(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.bin")
	data := make([]byte, 3*os.Getpagesize()+123)
	for i := range data {
		data[i] = byte(i*7 + i/251)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Map(p)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if runtime.GOOS == "linux" && !m.mapped {
		t.Error("the file was read, not mapped")
	}
	if !bytes.Equal(m.Bytes(), data) {
		t.Fatal("the mapping's bytes differ from the file's")
	}
	parts := [][2]int{{0, len(data)}, {1, 5}, {4095, 4097}, {len(data) - 1, len(data)}, {100, 100}}
	for _, closed := range []bool{false, true} {
		if closed {
			m.CloseFile()
		}
		for _, pt := range parts {
			dst := make([]byte, pt[1]-pt[0])
			if err := m.Copy(dst, m.Bytes()[pt[0]:pt[1]]); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(dst, data[pt[0]:pt[1]]) {
				t.Errorf("Copy of [%d:%d] (file closed %v) differs", pt[0], pt[1], closed)
			}
		}
	}
	other := []byte("not mapped")
	dst := make([]byte, len(other))
	if err := m.Copy(dst, other); err != nil || string(dst) != string(other) {
		t.Errorf("Copy of other bytes: %q %v", dst, err)
	}
	if err := m.Close(); err != nil || m.Bytes() != nil {
		t.Errorf("Close: %v", err)
	}
	e := filepath.Join(t.TempDir(), "empty")
	os.WriteFile(e, nil, 0o644)
	if m, err := Map(e); err != nil || len(m.Bytes()) != 0 {
		t.Errorf("an empty file: %v", err)
	}
	if _, err := Map(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("a missing file was mapped")
	}
}

// CopyFile replaces the target with the source's bytes, and leaves it as it
// was (and no temporary file) when the source cannot be read.
func TestCopyFile(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src"), filepath.Join(dir, "dst")
	data := bytes.Repeat([]byte("0123456789"), 100000)
	os.WriteFile(src, data, 0o644)
	os.WriteFile(dst, []byte("old"), 0o644)
	if err := CopyFile(src, dst); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(dst); !bytes.Equal(b, data) {
		t.Error("the copy differs")
	}
	os.WriteFile(dst, []byte("old"), 0o644)
	err := CopyFile(filepath.Join(dir, "none"), dst)
	if err == nil || !strings.Contains(err.Error(), "none") {
		t.Errorf("a missing source: %v", err)
	}
	if b, _ := os.ReadFile(dst); string(b) != "old" {
		t.Error("a failed copy changed the target")
	}
	noTemp(t, dir)
}
