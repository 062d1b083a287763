package export

import (
	"fmt"
	"slices"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/layers"
	"github.com/hyperat/hyperat/lora"
	"github.com/hyperat/hyperat/onnx"
)

// site is a node where a group's branch is added.
type site struct {
	node   int     // the MatMul or Gemm, by index in the graph's nodes
	x      string  // its activation input
	transX bool    // Gemm transA=1: x is [in, N]
	alpha  float32 // the product's alpha, which scales the branch too
	group  int
}

type use struct{ node, input int }

// sourceGraph is the source as protos, with each value's readers, beside its
// import, where layers.Match tells which nodes are linear layers: a proto
// node and the IR node it became share their first output's name.
type sourceGraph struct {
	gp      *onnx.GraphProto
	readers map[string][]use
	ir      *graph.Graph
	irUses  map[*graph.Value][]*graph.Node
	irNodes map[string]*graph.Node
}

func newSourceGraph(gp *onnx.GraphProto, ir *graph.Graph) *sourceGraph {
	s := &sourceGraph{gp: gp, readers: map[string][]use{}, ir: ir, irUses: ir.Consumers(), irNodes: map[string]*graph.Node{}}
	for i, n := range gp.GetNode() {
		for j, in := range n.GetInput() {
			s.readers[in] = append(s.readers[in], use{i, j})
		}
	}
	for _, n := range ir.Nodes {
		if len(n.Outputs) > 0 {
			s.irNodes[n.Outputs[0].Name] = n
		}
	}
	return s
}

// irNode is the IR node that proto node n became, or nil when the importer
// left none of its own (an Identity, a node it folded away).
func (s *sourceGraph) irNode(n *onnx.NodeProto) *graph.Node {
	if len(n.GetOutput()) == 0 || n.GetDomain() != "" && n.GetDomain() != "ai.onnx" {
		return nil
	}
	if in := s.irNodes[n.GetOutput()[0]]; in != nil && in.Op == n.GetOpType() {
		return in
	}
	return nil
}

// linear is the layer whose product is proto node n reading weight w at
// input: a product layers.Match recognizes, reading w as its weight through
// the Transpose t, or directly when t is nil; nil otherwise.
func (s *sourceGraph) linear(n *onnx.NodeProto, input int, w string, t *graph.Node) *layers.Linear {
	in := s.irNode(n)
	if in == nil || input != 1 {
		return nil
	}
	reader := t
	if reader == nil {
		reader = in
	}
	l := layers.Match(s.ir, s.irUses, in)
	if l == nil || l.Weight.Name != w || l.Reader != reader {
		return nil
	}
	return l
}

func (s *sourceGraph) isOutput(name string) bool {
	return slices.ContainsFunc(s.gp.GetOutput(), func(o *onnx.ValueInfoProto) bool { return o.GetName() == name })
}

// findSites finds the products where group g's branch goes: every reader of
// its weight (or the one its key names) must be a linear layer's product
// reading it (MatMul(x, W), Gemm(x, W), MatMul(x, Transpose(W))) in g's
// layout; any other reader is refused, since a branch after it would not
// equal the merged weight.
func (s *sourceGraph) findSites(g lora.Layer, group int) ([]site, error) {
	w := g.Key.Init
	if s.isOutput(w) {
		return nil, fmt.Errorf("initializer %q is a graph output; its LoRA cannot be added as nodes", w)
	}
	other := func(u use) error {
		n := s.gp.Node[u.node]
		return fmt.Errorf("initializer %q (layer %s) is read by node %q (%s, input %d); an unmerged export adds LoRA branches after MatMul and Gemm only",
			w, g.Name, n.GetName(), n.GetOpType(), u.input)
	}
	var sites []site
	add := func(u use, l *layers.Linear) error {
		n := s.gp.Node[u.node]
		if l.Transposed != g.Transposed {
			layout := map[bool]string{false: "[in,out]", true: "[out,in]"}
			return fmt.Errorf("node %q reads initializer %q as %s, but the LoRA of %s was made for %s",
				n.GetName(), w, layout[l.Transposed], g.Name, g.Layout())
		}
		sites = append(sites, site{node: u.node, x: n.GetInput()[0], transX: l.TransX, alpha: l.Alpha, group: group})
		return nil
	}
	for _, u := range s.readers[w] {
		n := s.gp.Node[u.node]
		if g.Key.Reader != "" && (len(n.GetOutput()) == 0 || n.GetOutput()[0] != g.Key.Reader) {
			continue // another node's copy of a shared initializer
		}
		t := s.irNode(n)
		if t == nil || t.Op != "Transpose" || u.input != 0 {
			l := s.linear(n, u.input, w, nil)
			if l == nil {
				return nil, other(u)
			}
			if err := add(u, l); err != nil {
				return nil, err
			}
			continue
		}
		// a weight read through a Transpose: every reader of the transpose
		// must be a product reading it as its weight
		if s.isOutput(n.GetOutput()[0]) {
			return nil, other(u)
		}
		for _, u2 := range s.readers[n.GetOutput()[0]] {
			l := s.linear(s.gp.Node[u2.node], u2.input, w, t)
			if l == nil {
				return nil, other(u2)
			}
			if err := add(u2, l); err != nil {
				return nil, err
			}
		}
	}
	if len(sites) == 0 {
		return nil, fmt.Errorf("no MatMul or Gemm reads initializer %q (layer %s)", w, g.Name)
	}
	return sites, nil
}

// names hands out names not yet used in a graph.
type names map[string]bool

func (ns names) fresh(base string) string {
	name := base
	for i := 1; ns[name]; i++ {
		name = base + "_" + strconv.Itoa(i)
	}
	ns[name] = true
	return name
}

// graphNames collects the value and node names of g and its subgraphs.
func graphNames(g *onnx.GraphProto, values, nodes names) {
	for _, vi := range g.GetInput() {
		values[vi.GetName()] = true
	}
	for _, vi := range g.GetOutput() {
		values[vi.GetName()] = true
	}
	for _, vi := range g.GetValueInfo() {
		values[vi.GetName()] = true
	}
	for _, tp := range g.GetInitializer() {
		values[tp.GetName()] = true
	}
	for _, n := range g.GetNode() {
		nodes[n.GetName()] = true
		for _, s := range n.GetInput() {
			values[s] = true
		}
		for _, s := range n.GetOutput() {
			values[s] = true
		}
		for _, a := range n.GetAttribute() {
			if a.G != nil {
				graphNames(a.G, values, nodes)
			}
			for _, sg := range a.GetGraphs() {
				graphNames(sg, values, nodes)
			}
		}
	}
}

// addBranches adds the groups' initializers and nodes to the build's graph;
// ir is the source's import.
func (b *build) addBranches(groups []lora.Layer, ir *graph.Graph) error {
	gp := b.src.GetGraph()
	at, err := b.sites(groups, newSourceGraph(gp, ir))
	if err != nil {
		return err
	}
	e := &emitter{groups: groups, values: names{}, nodeNames: names{}, made: map[int][2]string{}, scales: map[scaleKey]string{}}
	graphNames(gp, e.values, e.nodeNames)
	e.nodes = make([]*onnx.NodeProto, 0, len(gp.GetNode())+8*len(at))
	for i, n := range gp.GetNode() {
		if s, ok := at[i]; ok {
			e.branch(n, s)
		} else {
			e.nodes = append(e.nodes, n)
		}
	}
	b.graph.Node = e.nodes
	b.graph.Initializer = append(slices.Clip(b.graph.Initializer), e.inits...)
	b.added, b.addedIni = e.added, len(e.inits)
	if b.src.GetIrVersion() < 4 {
		// before IR 4 every initializer is also a graph input
		inputs := slices.Clone(b.graph.GetInput())
		for _, tp := range e.inits {
			inputs = append(inputs, inputOf(tp))
		}
		b.graph.Input = inputs
	}
	return nil
}

// sites checks each group's weight in the source and finds its sites, by
// the index of their node.
func (b *build) sites(groups []lora.Layer, s *sourceGraph) (map[int]site, error) {
	inits := map[string]*onnx.TensorProto{}
	for _, tp := range s.gp.GetInitializer() {
		inits[tp.GetName()] = tp
	}
	at := map[int]site{}
	for i, g := range groups {
		tp := inits[g.Key.Init]
		if tp == nil {
			return nil, fmt.Errorf("initializer %q of layer %s is not in the model", g.Key.Init, g.Name)
		}
		shape := make([]int, len(tp.GetDims()))
		for i, d := range tp.GetDims() {
			shape[i] = int(d)
		}
		if onnx.TensorProto_DataType(tp.GetDataType()) != onnx.TensorProto_FLOAT || !slices.Equal(shape, g.WeightShape()) {
			return nil, fmt.Errorf("initializer %q is %s %v; the LoRA of %s needs float32 %s",
				g.Key.Init, onnx.TensorProto_DataType(tp.GetDataType()), tp.GetDims(), g.Name, wantShape(g))
		}
		sites, err := s.findSites(g, i)
		if err != nil {
			return nil, err
		}
		for _, st := range sites {
			if _, dup := at[st.node]; dup {
				return nil, fmt.Errorf("node %q gets two LoRA branches", s.gp.Node[st.node].GetName())
			}
			at[st.node] = st
		}
	}
	return at, nil
}

// inputOf is the graph input declaring an initializer (before IR 4).
func inputOf(tp *onnx.TensorProto) *onnx.ValueInfoProto {
	shape := &onnx.TensorShapeProto{}
	for _, d := range tp.GetDims() {
		shape.Dim = append(shape.Dim, &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: d}})
	}
	return &onnx.ValueInfoProto{Name: tp.Name, Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{
		TensorType: &onnx.TypeProto_Tensor{ElemType: proto.Int32(int32(onnx.TensorProto_FLOAT)), Shape: shape}}}}
}

type scaleKey struct {
	group int
	v     float32
}

// emitter writes the new graph's nodes: the source's, with the branches
// after their sites, and the branches' initializers.
type emitter struct {
	groups            []lora.Layer
	values, nodeNames names
	nodes             []*onnx.NodeProto
	inits             []*onnx.TensorProto
	added             int               // nodes
	made              map[int][2]string // a group's transposed factors, made at its first site
	scales            map[scaleKey]string
}

func (e *emitter) init(base string, t *graph.Tensor) string {
	name := e.values.fresh(base)
	dims := make([]int64, len(t.Shape))
	for i, d := range t.Shape {
		dims[i] = int64(d)
	}
	e.inits = append(e.inits, &onnx.TensorProto{Name: proto.String(name), Dims: dims,
		DataType: proto.Int32(int32(onnx.TensorProto_FLOAT)), RawData: le32(t)})
	return name
}

func (e *emitter) node(prefix, op, name string, attrs []*onnx.AttributeProto, out string, in ...string) string {
	e.nodes = append(e.nodes, &onnx.NodeProto{Name: proto.String(e.nodeNames.fresh(prefix + "/lora/" + name)),
		OpType: proto.String(op), Input: in, Output: []string{out}, Attribute: attrs})
	e.added++
	return out
}

func swap() []*onnx.AttributeProto {
	return []*onnx.AttributeProto{{Name: proto.String("perm"), Type: onnx.AttributeProto_INTS.Enum(), Ints: []int64{1, 0}}}
}

// branch writes node n, its output renamed, and the branch after it:
// y = n's result + scale·(x·Aᵀ)·Bᵀ under n's output name.
func (e *emitter) branch(n *onnx.NodeProto, s site) {
	g := e.groups[s.group]
	y := n.GetOutput()[0]
	base := e.values.fresh(y + "_base")
	nn := shallow(n)
	nn.Output = slices.Clone(n.GetOutput())
	nn.Output[0] = base
	e.nodes = append(e.nodes, nn)
	prefix := n.GetName()
	if prefix == "" {
		prefix = g.Name
	}
	f, ok := e.made[s.group]
	if !ok {
		ka, kb := g.FactorNames("")
		a, b := e.init(ka, g.A), e.init(kb, g.B)
		f[0] = e.node(prefix, "Transpose", "Transpose_A", swap(), e.values.fresh(ka+"_T"), a)
		f[1] = e.node(prefix, "Transpose", "Transpose_B", swap(), e.values.fresh(kb+"_T"), b)
		e.made[s.group] = f
	}
	x := s.x
	if s.transX {
		x = e.node(prefix, "Transpose", "Transpose_x", swap(), e.values.fresh(y+"_lora_x"), x)
	}
	low := e.node(prefix, "MatMul", "MatMul_A", nil, e.values.fresh(y+"_lora_xA"), x, f[0])
	low = e.node(prefix, "MatMul", "MatMul_B", nil, e.values.fresh(y+"_lora_xAB"), low, f[1])
	if sc := s.alpha * g.Scale; sc != 1 {
		name, ok := e.scales[scaleKey{s.group, sc}]
		if !ok {
			name = e.init(g.Name+".lora_scale", graph.ScalarF32(sc))
			e.scales[scaleKey{s.group, sc}] = name
		}
		low = e.node(prefix, "Mul", "Mul_scale", nil, e.values.fresh(y+"_lora"), low, name)
	}
	e.node(prefix, "Add", "Add", nil, y, base, low)
}
