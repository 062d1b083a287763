package layers

import (
	"fmt"
	"strings"
	"testing"

	"github.com/hyperat/hyperat/graph"
)

// Convolutions are listed in graph order with their channels, kernel,
// strides and groups, named from the weight, the scope or the structure; a
// Conv whose weight is computed is no layer.
func TestRecognizeConvs(t *testing.T) {
	b := &builder{g: graph.New()}
	x := b.g.AddInput("x", graph.Float32, graph.Shape{{N: -1, Sym: "batch"}, {N: 3}, {N: 8}, {N: 8}})
	conv := func(x *graph.Value, name, wname string, attrs graph.Attrs, w ...int) *graph.Value {
		return b.node("Conv", name, attrs, x, b.param(wname, w...))
	}
	y := conv(x, "", "stem.0.weight", graph.Attrs{"strides": []int64{2, 2}}, 8, 3, 3, 3)
	y = conv(y, "/features/features.1/Conv", "", graph.Attrs{"group": int64(8)}, 8, 1, 3, 3) // depthwise
	y = conv(y, "/se/Conv", "", nil, 8, 8, 1, 1)                                             // a scope of two
	y = conv(y, "/se/Conv_1", "", graph.Attrs{"group": int64(2), "strides": []int64{1, 2}}, 4, 4, 1, 3)
	y = b.node("Conv", "", nil, y, b.node("Relu", "", nil, b.param("", 4, 4, 1, 1))) // weight computed
	r := b.recognize(t, y)
	var got []string
	for _, c := range r.Convs {
		s := ""
		if c.Structural {
			s = "*"
		}
		got = append(got, fmt.Sprint(c, s))
	}
	want := []string{
		"stem.0 (conv, 3->8, kernel [3 3], stride [2 2], groups 1)",
		"features.1 (conv, 8->8, kernel [3 3], stride [1 1], groups 8)",
		"conv_2 (conv, 8->8, kernel [1 1], stride [1 1], groups 1)*",
		"conv_3 (conv, 8->4, kernel [1 3], stride [1 2], groups 2)*",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// Tunable names what is missing: attention at all, or linear layers around
// the attention; a transformer is tunable.
func TestTunable(t *testing.T) {
	b, x := newBuilder()
	h := b.node("Relu", "", nil, b.lin(x, "", "", "", 8, 8))
	r := b.recognize(t, b.lin(h, "", "", "", 8, 4))
	if err := r.Tunable(); err == nil || !strings.Contains(err.Error(), "no attention") || !strings.Contains(err.Error(), "2 linear layers and 0 convolutions") {
		t.Errorf("no attention: %v", err)
	}

	b, x = newBuilder()
	y := b.attention(b.node("Relu", "", nil, x), x, x)
	r = b.recognize(t, b.classify(y, "head.weight"))
	if err := r.Tunable(); err == nil || !strings.Contains(err.Error(), "1 attention recognized, but no linear layer") || !strings.Contains(err.Error(), "Relu (node node_Relu_") {
		t.Errorf("attention without linears: %v", err)
	}

	b, x = newBuilder()
	r = b.recognize(t, b.classify(b.timmBlock(x, 0, true), "head.weight"))
	if err := r.Tunable(); err != nil {
		t.Errorf("a transformer: %v", err)
	}
}
