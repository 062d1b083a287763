package export

import (
	"bytes"
	"encoding/binary"
	"math"
	"testing"

	"github.com/hyperat/hyperat/graph"
)

// le32 is the tensor's memory on a little-endian CPU and a copy otherwise:
// both must give ONNX's little-endian bytes.
func TestLE32(t *testing.T) {
	x := graph.NewTensor(graph.Float32, []int{5})
	copy(x.F, []float32{0, -1.5, float32(math.Inf(1)), math.Float32frombits(0x7fc00001), 3.1415927})
	want := make([]byte, 0, 20)
	for _, v := range x.F {
		want = binary.LittleEndian.AppendUint32(want, math.Float32bits(v))
	}
	for _, native := range []bool{true, false} {
		saved := littleEndian
		littleEndian = littleEndian && native
		got := le32(x)
		littleEndian = saved
		if !bytes.Equal(got, want) {
			t.Errorf("native %v: got % x, want % x", native, got, want)
		}
	}
	if len(le32(graph.NewTensor(graph.Float32, []int{0}))) != 0 {
		t.Error("an empty tensor gives bytes")
	}
}
