package compile_test

import (
	"testing"

	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/testutil"
)

// Program.Memory is what the program really allocated (its arena and every
// buffer besides the source graph's constants, counted from the buffers
// themselves), and Plan says it before compiling; activations grow with the
// batch.
func TestMemoryIsWhatTheProgramHolds(t *testing.T) {
	m, err := onnximport.Load(testutil.Fixture("models", "mnist_vit_op17.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	g := m.Graph
	_, loss := withCE(g, 10)
	var prev compile.Memory
	for _, batch := range []int{1, 4} {
		opts := compile.Options{Batch: batch, Grad: &compile.GradSpec{Loss: loss, Wrt: []*graph.Value{g.Inputs[0]}}}
		planned, err := compile.Plan(g, opts)
		if err != nil {
			t.Fatal(err)
		}
		p, err := compile.Compile(g, opts)
		if err != nil {
			t.Fatal(err)
		}
		mem := p.Memory()
		if mem != planned {
			t.Fatalf("batch %d: Plan says %+v, the program holds %+v", batch, planned, mem)
		}
		if got := compile.Allocated(p, g); got != mem.Total() {
			t.Fatalf("batch %d: Memory says %d bytes (%+v), the buffers occupy %d", batch, mem.Total(), mem, got)
		}
		if mem.Arena <= prev.Arena || mem.Buffers <= prev.Buffers {
			t.Fatalf("batch %d: %+v does not grow from %+v", batch, mem, prev)
		}
		prev = mem
		t.Logf("batch %d: %+v", batch, mem)
	}
}
