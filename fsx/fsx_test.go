package fsx

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// noTemp fails when a temporary file is left in dir.
func noTemp(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".tmp") {
			t.Errorf("temporary file %s left behind", e.Name())
		}
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "a.json")
	for _, data := range []string{"first", "second, longer"} {
		if err := WriteFile(p, []byte(data)); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil || string(b) != data {
			t.Fatalf("read %q, %v; want %q", b, err, data)
		}
	}
	if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, %v; want 0644", st.Mode(), err)
	}
	noTemp(t, dir)

	// a write that cannot be made names the target, not the temporary file
	err := WriteFile(filepath.Join(dir, "no", "b.json"), []byte("x"))
	if err == nil || !strings.HasPrefix(err.Error(), filepath.Join(dir, "no", "b.json")+": ") || strings.Contains(err.Error(), ".tmp") {
		t.Errorf("error %v", err)
	}
	// renaming over a folder fails and leaves no temporary file
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(filepath.Join(dir, "d"), []byte("x")); err == nil || strings.Contains(err.Error(), ".tmp") {
		t.Errorf("writing over a folder: %v", err)
	}
	noTemp(t, dir)
}

func TestWriteNewAndCopy(t *testing.T) {
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")
	if err := WriteNew(a, []byte("data")); err != nil {
		t.Fatal(err)
	}
	if err := WriteNew(a, []byte("again")); !errors.Is(err, fs.ErrExist) {
		t.Errorf("WriteNew over an existing file: %v", err)
	}
	if err := CopyNew(a, b); err != nil {
		t.Fatal(err)
	}
	if err := LinkOrCopy(a, c); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{a, b, c} {
		if got, _ := os.ReadFile(p); string(got) != "data" {
			t.Errorf("%s holds %q", p, got)
		}
	}
	if err := CopyNew(a, b); !errors.Is(err, fs.ErrExist) {
		t.Errorf("CopyNew over an existing file: %v", err)
	}
	if err := CopyNew(filepath.Join(dir, "missing"), filepath.Join(dir, "d")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("CopyNew of a missing file: %v", err)
	}
}

func TestBare(t *testing.T) {
	_, err := os.ReadFile(filepath.Join(t.TempDir(), "missing"))
	if got := Bare(err); got != fs.ErrNotExist && got.Error() != "no such file or directory" {
		t.Errorf("Bare(%v) = %v", err, got)
	}
	err = os.Rename(filepath.Join(t.TempDir(), "missing"), filepath.Join(t.TempDir(), "x"))
	if got := Bare(err); strings.Contains(got.Error(), "missing") {
		t.Errorf("Bare(%v) = %v", err, got)
	}
	plain := errors.New("plain")
	if Bare(plain) != plain {
		t.Errorf("Bare changed an error without a path")
	}
}
