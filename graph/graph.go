// Package graph is the intermediate representation: values with a dtype and a shape
// (possibly symbolic), nodes that apply an operator to values, and graphs that own both.
// Operators use ONNX names and the ONNX semantics of the newest opset the importer
// knows, so a graph is independent of the opset the file was written with; the few
// operators ONNX lacks (gradient helpers, losses) are listed in the op table.
// The package knows nothing about files or kernels.
package graph

import (
	"fmt"
	"sort"
	"strings"
)

// Dim is one dimension of a shape: a known size (N >= 0) or an unknown one (N < 0)
// that may carry a symbolic name such as "batch".
type Dim struct {
	N   int
	Sym string
}

// Shape is a list of dims; a nil Shape means the rank is unknown.
type Shape []Dim

// StaticShape makes a Shape of known dims.
func StaticShape(dims ...int) Shape {
	s := make(Shape, len(dims))
	for i, d := range dims {
		s[i] = Dim{N: d}
	}
	return s
}

// Static returns the dims as ints when all are known.
func (s Shape) Static() ([]int, bool) {
	if s == nil {
		return nil, false
	}
	out := make([]int, len(s))
	for i, d := range s {
		if d.N < 0 {
			return nil, false
		}
		out[i] = d.N
	}
	return out, true
}

func (s Shape) String() string {
	if s == nil {
		return "[?]"
	}
	parts := make([]string, len(s))
	for i, d := range s {
		switch {
		case d.N >= 0:
			parts[i] = fmt.Sprint(d.N)
		case d.Sym != "":
			parts[i] = d.Sym
		default:
			parts[i] = "?"
		}
	}
	return "[" + strings.Join(parts, ",") + "]"
}

// Value is an edge of the graph: a graph input, a constant, or a node output.
type Value struct {
	Name  string
	DType DType
	Shape Shape
	// Const holds the data of initializers and folded constants.
	Const *Tensor
	// Param marks a constant that came from a model initializer (a weight),
	// as opposed to one made by folding; export writes Params back.
	Param bool
	// Def is the node that produces the value, nil for inputs and constants.
	Def *Node
}

// IsConst reports whether the value's data is known at compile time.
func (v *Value) IsConst() bool { return v != nil && v.Const != nil }

// StaticShape returns the shape as ints; it panics when a dim is unknown, so use
// it only after shapes were specialized.
func (v *Value) StaticShape() []int {
	s, ok := v.Shape.Static()
	if !ok {
		panic(fmt.Sprintf("graph: value %q has no static shape (%v)", v.Name, v.Shape))
	}
	return s
}

func (v *Value) String() string { return fmt.Sprintf("%%%s:%s%v", v.Name, v.DType, v.Shape) }

// Node applies Op to Inputs giving Outputs. A nil input stands for an omitted
// optional input. Name keeps the node name from the file: it often carries the
// module scope ("/blocks.3/mlp/fc1/MatMul").
type Node struct {
	Op      string
	Name    string
	Inputs  []*Value
	Outputs []*Value
	Attrs   Attrs
}

// In returns input i, or nil when it is absent.
func (n *Node) In(i int) *Value {
	if i < len(n.Inputs) {
		return n.Inputs[i]
	}
	return nil
}

func (n *Node) String() string {
	var b strings.Builder
	for i, o := range n.Outputs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(o.String())
	}
	fmt.Fprintf(&b, " = %s(", n.Op)
	for i, in := range n.Inputs {
		if i > 0 {
			b.WriteString(", ")
		}
		if in == nil {
			b.WriteString("_")
		} else {
			b.WriteString("%" + in.Name)
		}
	}
	b.WriteString(")")
	if len(n.Attrs) > 0 {
		b.WriteString(" " + n.Attrs.String())
	}
	if n.Name != "" {
		b.WriteString("  # " + n.Name)
	}
	return b.String()
}

// Attrs are a node's attributes: int64, float32, string, []int64, []float32 or *Tensor.
type Attrs map[string]any

// Int reads an integer attribute with a default.
func (a Attrs) Int(name string, def int64) int64 {
	if v, ok := a[name].(int64); ok {
		return v
	}
	return def
}

// Float reads a float attribute with a default.
func (a Attrs) Float(name string, def float32) float32 {
	if v, ok := a[name].(float32); ok {
		return v
	}
	return def
}

// String reads a string attribute with a default.
func (a Attrs) Str(name, def string) string {
	if v, ok := a[name].(string); ok {
		return v
	}
	return def
}

// Ints reads an integer-list attribute; ok is false when it is absent.
func (a Attrs) Ints(name string) ([]int64, bool) {
	v, ok := a[name].([]int64)
	return v, ok
}

// Has reports whether the attribute is set.
func (a Attrs) Has(name string) bool { _, ok := a[name]; return ok }

func (a Attrs) String() string {
	keys := make([]string, 0, len(a))
	for k := range a {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%v", k, a[k])
	}
	return "{" + strings.Join(parts, " ") + "}"
}

// Clone copies the attribute map (values are shared; they are never mutated).
func (a Attrs) Clone() Attrs {
	c := make(Attrs, len(a))
	for k, v := range a {
		c[k] = v
	}
	return c
}

// Graph is a computation: inputs, nodes in topological order, and outputs.
type Graph struct {
	Inputs  []*Value
	Outputs []*Value
	Nodes   []*Node
	// Params lists the initializers (weights) in file order.
	Params []*Value
	names  map[string]int
}

// New returns an empty graph.
func New() *Graph { return &Graph{names: map[string]int{}} }

// UniqueName returns base, or base with a numeric suffix when base is taken.
func (g *Graph) UniqueName(base string) string {
	if g.names == nil {
		g.names = map[string]int{}
	}
	if base == "" {
		base = "v"
	}
	n, taken := g.names[base]
	if !taken {
		g.names[base] = 0
		return base
	}
	for {
		n++
		cand := fmt.Sprintf("%s_%d", base, n)
		if _, ok := g.names[cand]; !ok {
			g.names[base] = n
			g.names[cand] = 0
			return cand
		}
	}
}

// NewValue creates a value with a unique name (not yet attached anywhere).
func (g *Graph) NewValue(name string, dt DType, shape Shape) *Value {
	return &Value{Name: g.UniqueName(name), DType: dt, Shape: shape}
}

// AddInput creates a graph input.
func (g *Graph) AddInput(name string, dt DType, shape Shape) *Value {
	v := g.NewValue(name, dt, shape)
	g.Inputs = append(g.Inputs, v)
	return v
}

// Const creates a constant value holding t (not a Param).
func (g *Graph) Const(name string, t *Tensor) *Value {
	v := g.NewValue(name, t.DType, StaticShape(t.Shape...))
	v.Const = t
	return v
}

// AddParam creates an initializer value.
func (g *Graph) AddParam(name string, t *Tensor) *Value {
	v := g.Const(name, t)
	v.Param = true
	g.Params = append(g.Params, v)
	return v
}

// AddNode appends a node with nOut fresh outputs named after outNames (or the op).
// Output dtypes and shapes are left for shape inference.
func (g *Graph) AddNode(op, name string, inputs []*Value, attrs Attrs, outNames ...string) *Node {
	n := &Node{Op: op, Name: name, Inputs: inputs, Attrs: attrs}
	if n.Attrs == nil {
		n.Attrs = Attrs{}
	}
	for _, on := range outNames {
		if on == "" {
			on = strings.ToLower(op)
		}
		o := g.NewValue(on, Invalid, nil)
		o.Def = n
		n.Outputs = append(n.Outputs, o)
	}
	g.Nodes = append(g.Nodes, n)
	return n
}

// Op is a shorthand for a single-output node; it returns the output.
func (g *Graph) Op(op string, attrs Attrs, inputs ...*Value) *Value {
	return g.AddNode(op, "", inputs, attrs, strings.ToLower(op)).Outputs[0]
}

// Consumers maps each value to the nodes that read it.
func (g *Graph) Consumers() map[*Value][]*Node {
	m := map[*Value][]*Node{}
	for _, n := range g.Nodes {
		for _, in := range n.Inputs {
			if in != nil {
				m[in] = append(m[in], n)
			}
		}
	}
	return m
}

// ReplaceUses makes every reader of old (nodes and graph outputs) read new instead.
func (g *Graph) ReplaceUses(old, new *Value) {
	for _, n := range g.Nodes {
		for i, in := range n.Inputs {
			if in == old {
				n.Inputs[i] = new
			}
		}
	}
	for i, o := range g.Outputs {
		if o == old {
			g.Outputs[i] = new
		}
	}
}

// Clone deep-copies the graph structure; constant tensors are shared (they are
// treated as immutable), so cloning a large model is cheap.
func (g *Graph) Clone() *Graph {
	c, _, _ := g.CloneMapped()
	return c
}

// CloneMapped is Clone that also returns where each value and node went.
func (g *Graph) CloneMapped() (*Graph, map[*Value]*Value, map[*Node]*Node) {
	c := New()
	for k, v := range g.names {
		c.names[k] = v
	}
	vm := map[*Value]*Value{}
	nm := map[*Node]*Node{}
	cv := func(v *Value) *Value {
		if v == nil {
			return nil
		}
		if nv, ok := vm[v]; ok {
			return nv
		}
		nv := &Value{Name: v.Name, DType: v.DType, Const: v.Const, Param: v.Param}
		if v.Shape != nil {
			nv.Shape = append(Shape{}, v.Shape...)
		}
		vm[v] = nv
		return nv
	}
	for _, v := range g.Inputs {
		c.Inputs = append(c.Inputs, cv(v))
	}
	for _, v := range g.Params {
		c.Params = append(c.Params, cv(v))
	}
	for _, n := range g.Nodes {
		nn := &Node{Op: n.Op, Name: n.Name, Attrs: n.Attrs.Clone()}
		for _, in := range n.Inputs {
			nn.Inputs = append(nn.Inputs, cv(in))
		}
		for _, o := range n.Outputs {
			no := cv(o)
			no.Def = nn
			nn.Outputs = append(nn.Outputs, no)
		}
		c.Nodes = append(c.Nodes, nn)
		nm[n] = nn
	}
	for _, v := range g.Outputs {
		c.Outputs = append(c.Outputs, cv(v))
	}
	return c, vm, nm
}

// ParamToInput turns an initializer into a graph input of the same shape (its
// data is left in v.Const's former tensor, returned): tuning feeds trained
// weights at every run instead of folding them.
func (g *Graph) ParamToInput(v *Value) *Tensor {
	t := v.Const
	v.Const, v.Param = nil, false
	for i, p := range g.Params {
		if p == v {
			g.Params = append(g.Params[:i], g.Params[i+1:]...)
			break
		}
	}
	g.Inputs = append(g.Inputs, v)
	return t
}

// ParamByName finds an initializer.
func (g *Graph) ParamByName(name string) *Value {
	for _, p := range g.Params {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// NumParams counts the elements of all float initializers.
func (g *Graph) NumParams() int {
	n := 0
	for _, p := range g.Params {
		if p.DType == Float32 && p.Const != nil {
			n += p.Const.Numel()
		}
	}
	return n
}

// String prints the graph one node per line.
func (g *Graph) String() string {
	var b strings.Builder
	b.WriteString("graph(")
	for i, in := range g.Inputs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(in.String())
	}
	b.WriteString(")\n")
	for _, n := range g.Nodes {
		b.WriteString("  " + n.String() + "\n")
	}
	b.WriteString("  return ")
	for i, o := range g.Outputs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("%" + o.Name)
	}
	b.WriteString("\n")
	return b.String()
}
