package sysmem

import (
	"os"
	"path/filepath"
	"testing"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]int64{"12G": 12 << 30, "1.5GiB": 3 << 29, "800m": 800 << 20, "64 KB": 64 << 10, "4096": 4096, "2T": 2 << 40} {
		if got, err := Parse(in); err != nil || got != want {
			t.Errorf("Parse(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "G", "-1G", "0", "12X", "1e30T", "twelve"} {
		if _, err := Parse(bad); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	if got := Format(3 << 29); got != "1.5 GiB" {
		t.Errorf("Format = %q", got)
	}
}

// Available takes MemAvailable, or the room left under a cgroup's limit
// when that is less.
func TestAvailable(t *testing.T) {
	d := t.TempDir()
	write := func(name, s string) {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(d, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("meminfo", "MemTotal:       25000000 kB\nMemFree:         1000 kB\nMemAvailable:   20000000 kB\n")
	cg := filepath.Join(d, "cg")
	check := func(want int64, from string) {
		t.Helper()
		got, src, err := Available(filepath.Join(d, "meminfo"), cg)
		if err != nil || got != want || src != from {
			t.Fatalf("Available = %d, %q, %v; want %d, %q", got, src, err, want, from)
		}
	}
	check(20000000<<10, "MemAvailable")
	write("cg/memory.max", "max\n")
	write("cg/memory.current", "100\n")
	check(20000000<<10, "MemAvailable")
	write("cg/memory.max", "8589934592\n")
	write("cg/memory.current", "1073741824\n")
	check(7<<30, "cgroup limit")
	if _, _, err := Available(filepath.Join(d, "none"), cg); err == nil {
		t.Fatal("no meminfo file, no error")
	}
}
