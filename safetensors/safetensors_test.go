package safetensors

import (
	"testing"

	"github.com/hyperat/hyperat/graph"
)

func TestRoundTripAndChecksum(t *testing.T) {
	in := map[string]*graph.Tensor{
		"a.weight": graph.F32([]int{2, 3}, []float32{1, 2, 3, 4, 5, -6}),
		"b":        graph.F32([]int{1}, []float32{0.5}),
	}
	b, err := Encode(in, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	out, meta, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if meta["format"] != "pt" || len(out) != 2 || out["a.weight"].F[5] != -6 || out["a.weight"].Shape[1] != 3 {
		t.Fatalf("round trip lost data: %v %v", out, meta)
	}
	b[len(b)-1] ^= 1
	if _, _, err := Decode(b); err == nil {
		t.Fatal("a damaged file was accepted")
	}
	if _, _, err := Decode(b[:5]); err == nil {
		t.Fatal("a truncated file was accepted")
	}
}
