package layers

import (
	"testing"

	"github.com/hyperat/hyperat/graph"
)

// Match finds every form of linear layer and says how it reads its weight;
// recognition keeps only the products it tunes.
func TestMatchForms(t *testing.T) {
	b, x := newBuilder()
	flat := b.node("Reshape", "", nil, x, b.g.Const("flat", graph.I64([]int{2}, []int64{-1, 8})))
	w1 := b.param("W1", 6, 8)
	y1 := b.node("Gemm", "fc1", graph.Attrs{"transB": int64(1), "alpha": float32(0.5)}, flat, w1, b.param("b1", 6))
	w2 := b.param("W2", 6, 5)
	y2 := b.node("Gemm", "fc2", graph.Attrs{"transA": int64(1)}, b.node("Transpose", "", nil, y1), w2)
	w3 := b.param("W3", 4, 5)
	w3t := b.node("Transpose", "w3t", graph.Attrs{"perm": []int64{1, 0}}, w3)
	y3 := b.node("MatMul", "head", nil, y2, w3t)
	y4 := b.node("MatMul", "head2", nil, y2, w3t) // a second product on one transposed weight
	w5 := b.param("W5", 4, 3)
	y5 := b.node("Add", "", nil, b.node("MatMul", "fc5", nil, y3, w5), b.param("b5", 3))
	y6 := b.node("MatMul", "fc6", nil, y4, w5) // W5 read by two products
	b.g.Outputs = []*graph.Value{y5, y6}
	readers := b.g.Consumers()
	match := func(y *graph.Value) *Linear {
		n := y.Def
		if n.Op == "Add" {
			n = n.Inputs[0].Def
		}
		l := Match(b.g, readers, n)
		if l == nil {
			t.Fatalf("%s: no linear layer", n.Name)
		}
		return l
	}
	for _, c := range []struct {
		y                  *graph.Value
		w                  *graph.Value
		in, out            int
		transposed, transX bool
		alpha              float32
		bias               string
		key                string
	}{
		{y1, w1, 8, 6, true, false, 0.5, "b1", "W1"},
		{y2, w2, 6, 5, false, true, 1, "", "W2"},
		{y3, w3, 5, 4, true, false, 1, "", "W3"},
		{y5, w5, 4, 3, false, false, 1, "b5", "W5@matmul_2"},
		{y6, w5, 4, 3, false, false, 1, "", "W5@matmul_3"},
	} {
		l := match(c.y)
		bias := ""
		if l.Bias != nil {
			bias = l.Bias.Name
		}
		if l.Weight != c.w || l.In != c.in || l.Out != c.out || l.Transposed != c.transposed || l.TransX != c.transX ||
			l.Alpha != c.alpha || bias != c.bias || l.Key.String() != c.key || l.Output != c.y {
			t.Errorf("%s: %+v (key %s)", l.Node.Name, l, l.Key)
		}
	}
	if l := match(y3); l.Reader != w3t.Def {
		t.Errorf("the transposed weight is read by %v, want its Transpose", l.Reader)
	}
	if Match(b.g, readers, w3t.Def) != nil || Match(b.g, readers, y5.Def) != nil {
		t.Errorf("a Transpose or an Add matched as a linear layer")
	}
	// recognition tunes none of the first four: alpha, transA, a Transpose
	// read twice; only the plain products on W5 remain
	r, err := Recognize(b.g)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Linears) != 2 || r.Linears[0].Weight != w5 || r.Linears[1].Weight != w5 || !r.Linears[0].SharedWeight {
		t.Errorf("recognized %v", r.Linears)
	}
}

func TestWeightKeyText(t *testing.T) {
	for s, k := range map[string]WeightKey{
		"blocks.0.attn.qkv.weight":   {Init: "blocks.0.attn.qkv.weight"},
		"val_12@/blocks.1/fc1/Gemm_": {Init: "val_12", Reader: "/blocks.1/fc1/Gemm_"},
		"w@a@b":                      {Init: "w", Reader: "a@b"},
	} {
		if got := ParseWeightKey(s); got != k {
			t.Errorf("ParseWeightKey(%q) = %+v, want %+v", s, got, k)
		}
		if k.String() != s {
			t.Errorf("%+v prints %q, want %q", k, k.String(), s)
		}
		var back WeightKey
		if b, _ := k.MarshalText(); back.UnmarshalText(b) != nil || back != k {
			t.Errorf("%+v does not survive its text form", k)
		}
	}
}
