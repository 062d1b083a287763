package layers

import (
	"fmt"

	"github.com/hyperat/hyperat/graph"
)

// Conv is one convolution of a graph whose weight is a float initializer:
// a patch embedding, a convolutional stem or block, a squeeze-excitation
// layer. Recognition lists convolutions so that a user sees what the tool
// leaves alone; tuning adapts linear layers only.
type Conv struct {
	// Name is recovered from the file as a linear layer's is; Structural is
	// set when it was made from the structure ("conv_N").
	Name       string
	Structural bool
	Node       *graph.Node
	Weight     *graph.Value
	// In and Out are the input and output channels; Group is the number of
	// groups (In for a depthwise convolution).
	In, Out, Group int
	// Kernel and Strides per spatial axis.
	Kernel, Strides []int
}

func (c *Conv) String() string {
	return fmt.Sprintf("%s (conv, %d->%d, kernel %v, stride %v, groups %d)", c.Name, c.In, c.Out, c.Kernel, c.Strides, c.Group)
}

// findConvs collects the Conv nodes whose weight is a float initializer
// ([out, in/group, k...]).
func (r *recognizer) findConvs() {
	for _, n := range r.g.Nodes {
		if n.Op != "Conv" || len(n.Inputs) < 2 {
			continue
		}
		w := n.Inputs[1]
		if w == nil || !w.Param || w.Const == nil || w.Const.DType != graph.Float32 || len(w.Const.Shape) < 3 {
			continue
		}
		ws := w.Const.Shape
		group := int(n.Attrs.Int("group", 1))
		c := &Conv{Node: n, Weight: w, Out: ws[0], In: ws[1] * group, Group: group, Kernel: ws[2:]}
		c.Strides = make([]int, len(c.Kernel))
		s, ok := n.Attrs.Ints("strides")
		for i := range c.Strides {
			c.Strides[i] = 1
			if ok && i < len(s) {
				c.Strides[i] = int(s[i])
			}
		}
		r.convs = append(r.convs, c)
	}
}

// nameConvs names the convolutions as name names the linear layers: from the
// file where it says so unambiguously, else "conv_N", every name unique.
func (r *recognizer) nameConvs() {
	items := make([]named, len(r.convs))
	for i, c := range r.convs {
		items[i] = named{node: c.Node, weight: c.Weight, bias: c.Node.In(2)}
	}
	names := r.recoverNames(items)
	taken := map[string]bool{}
	for i, c := range r.convs {
		if names[i] != "" {
			c.Name = names[i]
			taken[c.Name] = true
		}
	}
	for i, c := range r.convs {
		if names[i] != "" {
			continue
		}
		c.Structural = true
		c.Name = fmt.Sprintf("conv_%d", i)
		for k := 2; taken[c.Name]; k++ {
			c.Name = fmt.Sprintf("conv_%d_%d", i, k)
		}
		taken[c.Name] = true
	}
}
