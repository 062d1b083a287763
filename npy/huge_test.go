package npy

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
)

// A header that claims far more data than the stream holds is an error,
// found without allocating what the header claims.
func TestHugeHeaderIsTruncationError(t *testing.T) {
	h := "{'descr': '<i8', 'fortran_order': False, 'shape': (2147483647,), }"
	h += strings.Repeat(" ", 64-(10+len(h)+1)%64) + "\n"
	var b bytes.Buffer
	b.WriteString("\x93NUMPY\x01\x00")
	b.WriteByte(byte(len(h)))
	b.WriteByte(byte(len(h) >> 8))
	b.WriteString(h)
	b.Write(make([]byte, 64))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	if _, err := Read(bytes.NewReader(b.Bytes())); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Fatalf("got %v, want a truncation error", err)
	}
	runtime.ReadMemStats(&after)
	if a := after.TotalAlloc - before.TotalAlloc; a > 64<<20 {
		t.Fatalf("reading allocated %d bytes for a 64-byte body", a)
	}
}
