package onnximport

import (
	"fmt"
	"sort"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/onnx"
)

// nodeCtx is what a converter sees: the ONNX node, its resolved inputs, attributes.
type nodeCtx struct {
	*ctx
	p     *onnx.NodeProto
	in    []*graph.Value
	attrs map[string]*onnx.AttributeProto
}

type converter func(n *nodeCtx) error

// converters holds one function per supported ONNX operator (default domain).
var converters = map[string]converter{}

// SupportedOps lists the operators the importer converts, sorted.
func SupportedOps() []string {
	ops := make([]string, 0, len(converters))
	for op := range converters {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	return ops
}

func (n *nodeCtx) input(i int) *graph.Value {
	if i < len(n.in) {
		return n.in[i]
	}
	return nil
}

func (n *nodeCtx) int(name string, def int64) int64 {
	if a, ok := n.attrs[name]; ok {
		return a.GetI()
	}
	return def
}

func (n *nodeCtx) float(name string, def float32) float32 {
	if a, ok := n.attrs[name]; ok {
		return a.GetF()
	}
	return def
}

func (n *nodeCtx) str(name, def string) string {
	if a, ok := n.attrs[name]; ok {
		return string(a.GetS())
	}
	return def
}

func (n *nodeCtx) ints(name string) ([]int64, bool) {
	a, ok := n.attrs[name]
	if !ok {
		return nil, false
	}
	return append([]int64{}, a.GetInts()...), true
}

func (n *nodeCtx) has(name string) bool { _, ok := n.attrs[name]; return ok }

// emit adds an IR node with the ONNX node's output names.
func (n *nodeCtx) emit(op string, inputs []*graph.Value, attrs graph.Attrs) *graph.Node {
	outs := n.p.GetOutput()
	names := make([]string, len(outs))
	for i, o := range outs {
		names[i] = o
		if o == "" {
			names[i] = fmt.Sprintf("%s_unused%d", n.p.GetName(), i)
		}
	}
	node := n.g.AddNode(op, n.p.GetName(), inputs, attrs, names...)
	for i, o := range outs {
		if o != "" {
			n.values[o] = node.Outputs[i]
		}
	}
	return node
}

// emitAux adds a helper IR node whose single output is internal to this conversion.
func (n *nodeCtx) emitAux(op string, inputs []*graph.Value, attrs graph.Attrs) *graph.Value {
	return n.g.AddNode(op, n.p.GetName(), inputs, attrs, n.p.GetName()+"_"+op).Outputs[0]
}

// bind makes the ONNX node's output i an alias of v.
func (n *nodeCtx) bind(i int, v *graph.Value) {
	if i < len(n.p.GetOutput()) && n.p.GetOutput()[i] != "" {
		n.values[n.p.GetOutput()[i]] = v
	}
}

// constInts makes an int64 constant (for attributes that became inputs).
func (n *nodeCtx) constInts(name string, vals []int64) *graph.Value {
	return n.g.Const(n.p.GetName()+"_"+name, graph.I64([]int{len(vals)}, vals))
}

// needInputs checks the count of present leading inputs.
func (n *nodeCtx) needInputs(min int) error {
	for i := 0; i < min; i++ {
		if n.input(i) == nil {
			return fmt.Errorf("input %d is required", i)
		}
	}
	return nil
}

// tensorAttr decodes a TENSOR attribute.
func (n *nodeCtx) tensorAttr(name string) (*graph.Tensor, bool, error) {
	a, ok := n.attrs[name]
	if !ok {
		return nil, false, nil
	}
	t, err := n.tensor(a.GetT())
	return t, true, err
}
