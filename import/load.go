// Package onnximport reads an ONNX model into the graph IR, one converter per
// ONNX operator, following the operator specification of the model's opset
// (https://onnx.ai/onnx/operators/). Every operator is normalized to its newest
// form (attributes that later opsets moved to inputs become constant inputs), so
// the rest of the project sees one semantics per operator. No converter knows
// what model it is reading.
package onnximport

import (
	"errors"
	"fmt"
	"path/filepath"

	"google.golang.org/protobuf/proto"

	"github.com/hyperat/hyperat/fsx"
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/onnx"
)

// Model is an imported ONNX model: the decoded file and its IR graph.
type Model struct {
	Path     string
	Proto    *onnx.ModelProto
	Graph    *graph.Graph
	Opset    int64
	Producer string
	// Init maps each IR parameter to the ONNX initializer it came from, so export
	// can write merged weights back where they belong.
	Init map[*graph.Value]*onnx.TensorProto
}

// MinOpset and MaxOpset bound the default-domain opsets the importer accepts.
const (
	MinOpset = 7
	MaxOpset = 21
)

// Load reads and imports an ONNX file. The file is mapped, not read (see
// fsx.Map): the decoded model's large raw_data are slices of the mapping,
// converted to tensors through a small buffer (fsx.Mapping.Copy), so a model
// of weights costs about their size once, as the IR's tensors, not three
// times (the file, the decoded copy, the tensors). The mapping stays for the
// life of the process, as long as the model may be written back.
func Load(path string) (*Model, error) {
	mp, err := fsx.Map(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, fsx.Bare(err))
	}
	m, err := decode(mp.Bytes(), decodeShared)
	if err != nil {
		mp.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	im, err := importModel(m, filepath.Dir(path), mp.Copy)
	mp.CloseFile()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	im.Path = path
	return im, nil
}

// Decode parses ONNX bytes and checks that they hold a model with a graph.
func Decode(data []byte) (*onnx.ModelProto, error) {
	return decode(data, unmarshal)
}

func decode(data []byte, unmarshal func([]byte) (*onnx.ModelProto, error)) (*onnx.ModelProto, error) {
	if len(data) == 0 {
		return nil, errors.New("empty file, not an ONNX model")
	}
	m, err := unmarshal(data)
	if err != nil {
		return nil, fmt.Errorf("not an ONNX model, or a truncated one (%v)", err)
	}
	if m.GetIrVersion() <= 0 || m.GetGraph() == nil || len(m.GetGraph().GetNode()) == 0 {
		return nil, errors.New("not an ONNX model: no IR version or no graph nodes")
	}
	return m, nil
}

// Import converts a decoded model; dir is where external data files are looked up.
// The graph is verified against the operator registry (graph.Ops), which
// package compile fills: a program that imports links compile.
func Import(m *onnx.ModelProto, dir string) (*Model, error) {
	return importModel(m, dir, nil)
}

// importModel is Import; read, when not nil, copies the raw bytes of the
// initializers, a part at a time, before they are converted.
func importModel(m *onnx.ModelProto, dir string, read func(dst, src []byte) error) (*Model, error) {
	if len(graph.Ops) == 0 {
		return nil, errors.New("no operator is registered with the IR: the program must link package compile")
	}
	opset := int64(-1)
	for _, o := range m.GetOpsetImport() {
		if o.GetDomain() == "" || o.GetDomain() == "ai.onnx" {
			opset = o.GetVersion()
		}
	}
	if opset < 0 {
		return nil, errors.New("model imports no default-domain opset")
	}
	if opset < MinOpset || opset > MaxOpset {
		return nil, fmt.Errorf("opset %d is not supported (supported: %d to %d)", opset, MinOpset, MaxOpset)
	}
	c := &ctx{
		g:      graph.New(),
		opset:  opset,
		values: map[string]*graph.Value{},
		dir:    dir,
		read:   read,
		files:  map[string]*fsx.Mapping{},
		funcs:  map[string]*onnx.FunctionProto{},
		model:  &Model{Proto: m, Opset: opset, Producer: producer(m), Init: map[*graph.Value]*onnx.TensorProto{}},
	}
	defer c.closeFiles()
	for _, f := range m.GetFunctions() {
		c.funcs[f.GetDomain()+"::"+f.GetName()] = f
	}
	if err := c.graph(m.GetGraph()); err != nil {
		return nil, err
	}
	c.model.Graph = c.g
	if err := c.g.Verify(); err != nil {
		return nil, fmt.Errorf("imported graph is malformed: %v", err)
	}
	return c.model, nil
}

func producer(m *onnx.ModelProto) string {
	p := m.GetProducerName()
	if v := m.GetProducerVersion(); v != "" {
		p += " " + v
	}
	return p
}

// ctx is the state of one import.
type ctx struct {
	g      *graph.Graph
	opset  int64
	values map[string]*graph.Value
	dir    string
	funcs  map[string]*onnx.FunctionProto
	model  *Model
	// read copies part of an initializer's raw bytes (nil: they are read in place)
	read func(dst, src []byte) error
	// buf is the buffer raw bytes are read into
	buf []byte
	// arena is the memory reserved for the float32 initializers not yet read
	arena []float32
	// files are the external data files met, mapped (closed when the import ends)
	files map[string]*fsx.Mapping
}

func (c *ctx) graph(gp *onnx.GraphProto) error {
	c.reserve(gp)
	defer func() { c.arena = nil }()
	for _, tp := range gp.GetInitializer() {
		t, err := c.tensor(tp)
		if err != nil {
			return fmt.Errorf("initializer %q: %v", tp.GetName(), err)
		}
		v := c.g.AddParam(tp.GetName(), t)
		c.values[tp.GetName()] = v
		c.model.Init[v] = tp
	}
	if len(gp.GetSparseInitializer()) > 0 {
		return errors.New("sparse initializers are not supported")
	}
	for _, vi := range gp.GetInput() {
		if _, isInit := c.values[vi.GetName()]; isInit {
			continue // old exporters list initializers as inputs too
		}
		tt := vi.GetType().GetTensorType()
		if tt == nil {
			return fmt.Errorf("input %q is not a tensor", vi.GetName())
		}
		dt, err := dtypeOf(tt.GetElemType())
		if err != nil {
			return fmt.Errorf("input %q: %v", vi.GetName(), err)
		}
		v := c.g.AddInput(vi.GetName(), dt, shapeOf(tt))
		c.values[vi.GetName()] = v
	}
	for _, np := range gp.GetNode() {
		if err := c.node(np); err != nil {
			return err
		}
	}
	for _, vi := range gp.GetOutput() {
		v, ok := c.values[vi.GetName()]
		if !ok {
			return fmt.Errorf("graph output %q is never produced", vi.GetName())
		}
		if v.Def != nil && v.Shape == nil {
			// the declared shape ([batch, classes]) until compile infers its own
			v.Shape = shapeOf(vi.GetType().GetTensorType())
		}
		c.g.Outputs = append(c.g.Outputs, v)
	}
	if len(c.g.Outputs) == 0 {
		return errors.New("model has no outputs")
	}
	return nil
}

// shapeOf is a declared tensor shape: sizes, and symbolic dims by their
// names; nil (rank unknown) when none is declared.
func shapeOf(tt *onnx.TypeProto_Tensor) graph.Shape {
	if tt.GetShape() == nil {
		return nil
	}
	shape := graph.Shape{}
	for _, d := range tt.GetShape().GetDim() {
		if dv, ok := d.GetValue().(*onnx.TensorShapeProto_Dimension_DimValue); ok && dv.DimValue >= 0 {
			shape = append(shape, graph.Dim{N: int(dv.DimValue)})
			continue
		}
		shape = append(shape, graph.Dim{N: -1, Sym: d.GetDimParam()})
	}
	return shape
}

// UnsupportedOpError names an operator the importer has no converter for.
type UnsupportedOpError struct {
	Op, Domain, Node string
	Opset            int64
}

func (e *UnsupportedOpError) Error() string {
	op := e.Op
	if e.Domain != "" && e.Domain != "ai.onnx" {
		op = e.Domain + "." + e.Op
	}
	return fmt.Sprintf("unsupported operator %s (node %q, opset %d); supported operators are listed by `hyperat-import --ops` and in docs/OPS.md", op, e.Node, e.Opset)
}

func (c *ctx) node(np *onnx.NodeProto) error {
	dom := np.GetDomain()
	if dom != "" && dom != "ai.onnx" {
		if f, ok := c.funcs[dom+"::"+np.GetOpType()]; ok {
			return c.inlineFunction(np, f)
		}
		return &UnsupportedOpError{Op: np.GetOpType(), Domain: dom, Node: np.GetName(), Opset: c.opset}
	}
	conv, ok := converters[np.GetOpType()]
	if !ok {
		if f, ok := c.funcs[dom+"::"+np.GetOpType()]; ok {
			return c.inlineFunction(np, f)
		}
		return &UnsupportedOpError{Op: np.GetOpType(), Node: np.GetName(), Opset: c.opset}
	}
	if len(np.GetOutput()) == 0 || np.GetOutput()[0] == "" {
		return fmt.Errorf("node %q (%s): has no output", np.GetName(), np.GetOpType())
	}
	n := &nodeCtx{ctx: c, p: np, attrs: map[string]*onnx.AttributeProto{}}
	for _, a := range np.GetAttribute() {
		n.attrs[a.GetName()] = a
	}
	for _, name := range np.GetInput() {
		if name == "" {
			n.in = append(n.in, nil)
			continue
		}
		v, ok := c.values[name]
		if !ok {
			return fmt.Errorf("node %q (%s): input %q is not defined before it is used", np.GetName(), np.GetOpType(), name)
		}
		n.in = append(n.in, v)
	}
	if info, ok := graph.Ops[np.GetOpType()]; ok && info.MinIn > 0 && np.GetOpType() != "Constant" {
		if len(n.in) == 0 || n.in[0] == nil {
			return fmt.Errorf("node %q (%s, opset %d): input 0 is required", np.GetName(), np.GetOpType(), c.opset)
		}
	}
	if err := c.convert(conv, n); err != nil {
		return fmt.Errorf("node %q (%s, opset %d): %v", np.GetName(), np.GetOpType(), c.opset, err)
	}
	return nil
}

// convert runs a converter; a malformed node that a converter did not
// anticipate becomes an error naming the node rather than a crash.
func (c *ctx) convert(conv converter, n *nodeCtx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("malformed node (%v)", r)
		}
	}()
	return conv(n)
}

// inlineFunction expands a call to a model-local function into its body.
func (c *ctx) inlineFunction(np *onnx.NodeProto, f *onnx.FunctionProto) error {
	if len(np.GetInput()) > len(f.GetInput()) || len(np.GetOutput()) > len(f.GetOutput()) {
		return fmt.Errorf("node %q calls function %s with too many inputs or outputs", np.GetName(), f.GetName())
	}
	callAttrs := map[string]*onnx.AttributeProto{}
	for _, a := range np.GetAttribute() {
		callAttrs[a.GetName()] = a
	}
	prefix := np.GetName() + "/"
	rename := map[string]string{}
	for i, in := range f.GetInput() {
		if i < len(np.GetInput()) {
			rename[in] = np.GetInput()[i]
		} else {
			rename[in] = ""
		}
	}
	for i, out := range f.GetOutput() {
		if i < len(np.GetOutput()) {
			rename[out] = np.GetOutput()[i]
		}
	}
	name := func(s string) string {
		if s == "" {
			return ""
		}
		if r, ok := rename[s]; ok {
			return r
		}
		r := prefix + s
		rename[s] = r
		return r
	}
	for _, bn := range f.GetNode() {
		nn := proto.Clone(bn).(*onnx.NodeProto)
		nn.Name = proto.String(prefix + bn.GetName())
		for i, s := range nn.Input {
			nn.Input[i] = name(s)
		}
		for i, s := range nn.Output {
			nn.Output[i] = name(s)
		}
		var attrs []*onnx.AttributeProto
		for _, a := range nn.Attribute {
			if ref := a.GetRefAttrName(); ref != "" {
				v, ok := callAttrs[ref]
				if !ok {
					continue // attribute left at its default
				}
				v = proto.Clone(v).(*onnx.AttributeProto)
				v.Name = proto.String(a.GetName())
				a = v
			}
			attrs = append(attrs, a)
		}
		nn.Attribute = attrs
		if err := c.node(nn); err != nil {
			return err
		}
	}
	return nil
}
