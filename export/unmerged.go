package export

import (
	"fmt"
	"math"
	"slices"
	"strconv"

	"google.golang.org/protobuf/proto"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/hyperat"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/onnx"
)

// Branch is a LoRA to add to a model as nodes: every MatMul or Gemm that reads
// initializer Weight gets y += Scale · x·Aᵀ·Bᵀ, which is what merging
// Scale·B·A into the weight would give.
type Branch struct {
	// Layer names the new initializers: <Layer>.lora_A.weight and
	// <Layer>.lora_B.weight.
	Layer string
	// Weight is the ONNX initializer of the layer's weight; Transposed
	// tells its layout: [out, in] (Gemm transB=1, or a MatMul reading it
	// through a Transpose), else [in, out].
	Weight     string
	Transposed bool
	// A is [r, in], B [out, r] (PEFT's layout).
	A, B  *graph.Tensor
	Scale float32
}

// Unmerged writes src to out like Merged (weights replaced, the rest as it
// was) and adds the branches as nodes: after each MatMul or Gemm that reads a
// branch's weight come Transpose, MatMul, Mul and Add nodes computing
// y = x·W + Scale·(x·Aᵀ)·Bᵀ. The MatMul or Gemm's output is renamed and the
// Add takes its name, so no other node changes; the new nodes follow it, which
// keeps the order topological. Branches on one weight (one initializer shared
// by several layers, or several LoRAs on one layer) are concatenated into one
// factor pair applied at every reader of the weight. A branch's weight may not
// be in weights too. The check's default reference is the source with the
// branches merged into their weights.
func Unmerged(src *onnx.ModelProto, srcDir string, weights map[string]*graph.Tensor, branches []Branch, out string, o Options) (*Report, error) {
	for _, br := range branches {
		if _, ok := weights[br.Weight]; ok {
			return nil, fmt.Errorf("initializer %q has both a LoRA branch and a new value", br.Weight)
		}
	}
	groups, err := groupBranches(branches)
	if err != nil {
		return nil, err
	}
	b, err := newBuild(src, srcDir, out, weights)
	if err != nil {
		return nil, err
	}
	if err := b.addBranches(groups); err != nil {
		return nil, err
	}
	ref := o.Reference
	if ref == nil {
		m, err := onnximport.Import(src, srcDir)
		if err != nil {
			return nil, fmt.Errorf("the source model: %v", err)
		}
		w, err := MergeBranches(m.Graph, weights, branches)
		if err != nil {
			return nil, err
		}
		if ref, err = hyperat.WithWeights(m, m.Graph, w); err != nil {
			return nil, fmt.Errorf("the source model with the branches merged: %v", err)
		}
	}
	return b.write(ref, o)
}

// MergeBranches returns weights with, added for each branch, its weight from
// g (an imported source graph) plus Scale·B·A in the weight's layout;
// branches on one weight add up.
func MergeBranches(g *graph.Graph, weights map[string]*graph.Tensor, branches []Branch) (map[string]*graph.Tensor, error) {
	groups, err := groupBranches(branches)
	if err != nil {
		return nil, err
	}
	w := map[string]*graph.Tensor{}
	for k, v := range weights {
		w[k] = v
	}
	for _, gr := range groups {
		p := g.ParamByName(gr.weight)
		if p == nil || p.Const == nil {
			return nil, fmt.Errorf("initializer %q of layer %s is not in the model", gr.weight, gr.layer)
		}
		if !gr.fits(p.Const.Shape) {
			return nil, fmt.Errorf("initializer %q is %v; the LoRA of %s needs %s", gr.weight, p.Const.Shape, gr.layer, gr.wantShape())
		}
		t := p.Const.Clone()
		r := gr.a.Shape[0]
		for o := 0; o < gr.out; o++ {
			for k := 0; k < r; k++ {
				s := gr.b.F[o*r+k] * gr.scale
				ar := gr.a.F[k*gr.in : (k+1)*gr.in]
				for j, av := range ar {
					if gr.transposed {
						t.F[o*gr.in+j] += s * av
					} else {
						t.F[j*gr.out+o] += s * av
					}
				}
			}
		}
		w[gr.weight] = t
	}
	return w, nil
}

// group is the branches on one weight, their factors concatenated:
// A [R, in] stacks the As, B [out, R] puts the Bs side by side.
type group struct {
	layer, weight string
	transposed    bool
	in, out       int
	a, b          *graph.Tensor
	scale         float32
}

func (g *group) fits(shape []int) bool {
	want := []int{g.in, g.out}
	if g.transposed {
		want = []int{g.out, g.in}
	}
	return slices.Equal(shape, want)
}

func (g *group) wantShape() string {
	if g.transposed {
		return fmt.Sprintf("[%d,%d] ([out,in])", g.out, g.in)
	}
	return fmt.Sprintf("[%d,%d] ([in,out])", g.in, g.out)
}

func groupBranches(branches []Branch) ([]*group, error) {
	var groups []*group
	byWeight := map[string][]Branch{}
	for _, br := range branches {
		if err := checkBranch(br); err != nil {
			return nil, err
		}
		if _, ok := byWeight[br.Weight]; !ok {
			groups = append(groups, &group{layer: br.Layer, weight: br.Weight, transposed: br.Transposed,
				in: br.A.Shape[1], out: br.B.Shape[0], scale: br.Scale})
		}
		byWeight[br.Weight] = append(byWeight[br.Weight], br)
	}
	for _, g := range groups {
		brs := byWeight[g.weight]
		rank := 0
		fold := false
		for _, br := range brs {
			if br.Transposed != g.transposed || br.A.Shape[1] != g.in || br.B.Shape[0] != g.out {
				return nil, fmt.Errorf("the LoRAs of %s and %s share initializer %q but not its shape or layout", g.layer, br.Layer, g.weight)
			}
			fold = fold || br.Scale != g.scale
			rank += br.A.Shape[0]
		}
		if fold {
			g.scale = 1 // each branch's scale goes into its B
		}
		g.a = graph.NewTensor(graph.Float32, []int{rank, g.in})
		g.b = graph.NewTensor(graph.Float32, []int{g.out, rank})
		k0 := 0
		for _, br := range brs {
			r := br.A.Shape[0]
			copy(g.a.F[k0*g.in:], br.A.F)
			for o := 0; o < g.out; o++ {
				for k := 0; k < r; k++ {
					v := br.B.F[o*r+k]
					if fold {
						v *= br.Scale
					}
					g.b.F[o*rank+k0+k] = v
				}
			}
			k0 += r
		}
	}
	return groups, nil
}

func checkBranch(br Branch) error {
	a, b := br.A, br.B
	switch {
	case br.Layer == "" || br.Weight == "":
		return fmt.Errorf("a LoRA branch needs a layer name and a weight")
	case a == nil || b == nil || a.DType != graph.Float32 || b.DType != graph.Float32 || len(a.Shape) != 2 || len(b.Shape) != 2:
		return fmt.Errorf("the LoRA of %s needs float32 matrices A and B", br.Layer)
	case a.Shape[0] < 1 || a.Shape[0] != b.Shape[1] || a.Shape[1] < 1 || b.Shape[0] < 1:
		return fmt.Errorf("the LoRA of %s has A %v and B %v; want A [r,in] and B [out,r]", br.Layer, a.Shape, b.Shape)
	case !finite(a.F) || !finite(b.F) || !finite([]float32{br.Scale}):
		return fmt.Errorf("the LoRA of %s holds NaN or infinite values", br.Layer)
	}
	return nil
}

func finite(x []float32) bool {
	for _, v := range x {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return false
		}
	}
	return true
}

// site is a node where a group's branch is added.
type site struct {
	node       int    // the MatMul or Gemm, by index in the graph's nodes
	x          string // its activation input
	transX     bool   // Gemm transA=1: x is [in, N]
	alpha      float32
	transposed bool // the weight is read as [out, in] here
	g          *group
}

type use struct{ node, input int }

// findSites finds the nodes reading weight: MatMul(x, W), Gemm(x, W) and
// MatMul(x, Transpose(W)). Any other reader is refused, since a branch after
// it would not equal the merged weight.
func findSites(gp *onnx.GraphProto, readers map[string][]use, g *group) ([]site, error) {
	isDefault := func(n *onnx.NodeProto) bool { return n.GetDomain() == "" || n.GetDomain() == "ai.onnx" }
	for _, o := range gp.GetOutput() {
		if o.GetName() == g.weight {
			return nil, fmt.Errorf("initializer %q is a graph output; its LoRA cannot be added as nodes", g.weight)
		}
	}
	other := func(n *onnx.NodeProto, input int) error {
		return fmt.Errorf("initializer %q (layer %s) is read by node %q (%s, input %d); an unmerged export adds LoRA branches after MatMul and Gemm only",
			g.weight, g.layer, n.GetName(), n.GetOpType(), input)
	}
	var sites []site
	for _, u := range readers[g.weight] {
		n := gp.Node[u.node]
		switch {
		case !isDefault(n):
			return nil, other(n, u.input)
		case n.GetOpType() == "MatMul" && u.input == 1:
			sites = append(sites, site{node: u.node, x: n.Input[0], alpha: 1})
		case n.GetOpType() == "Gemm" && u.input == 1:
			sites = append(sites, site{node: u.node, x: n.Input[0], alpha: attrFloat(n, "alpha", 1),
				transX: attrInt(n, "transA", 0) == 1, transposed: attrInt(n, "transB", 0) == 1})
		case n.GetOpType() == "Transpose" && u.input == 0 && isSwap(n):
			t := n.GetOutput()[0]
			for _, o := range gp.GetOutput() {
				if o.GetName() == t {
					return nil, other(n, u.input)
				}
			}
			for _, u2 := range readers[t] {
				n2 := gp.Node[u2.node]
				if !isDefault(n2) || n2.GetOpType() != "MatMul" || u2.input != 1 {
					return nil, other(n2, u2.input)
				}
				sites = append(sites, site{node: u2.node, x: n2.Input[0], alpha: 1, transposed: true})
			}
		default:
			return nil, other(n, u.input)
		}
	}
	if len(sites) == 0 {
		return nil, fmt.Errorf("no MatMul or Gemm reads initializer %q (layer %s)", g.weight, g.layer)
	}
	for i := range sites {
		sites[i].g = g
		if sites[i].transposed != g.transposed {
			layout := map[bool]string{false: "[in,out]", true: "[out,in]"}
			return nil, fmt.Errorf("node %q reads initializer %q as %s, but the LoRA of %s was made for %s",
				gp.Node[sites[i].node].GetName(), g.weight, layout[sites[i].transposed], g.layer, layout[g.transposed])
		}
	}
	return sites, nil
}

// isSwap reports whether a Transpose swaps the two axes of a matrix.
func isSwap(n *onnx.NodeProto) bool {
	for _, a := range n.GetAttribute() {
		if a.GetName() == "perm" {
			return slices.Equal(a.GetInts(), []int64{1, 0})
		}
	}
	return true // no perm: reversed axes
}

func attrInt(n *onnx.NodeProto, name string, def int64) int64 {
	for _, a := range n.GetAttribute() {
		if a.GetName() == name {
			return a.GetI()
		}
	}
	return def
}

func attrFloat(n *onnx.NodeProto, name string, def float32) float32 {
	for _, a := range n.GetAttribute() {
		if a.GetName() == name {
			return a.GetF()
		}
	}
	return def
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

// addBranches adds the groups' initializers and nodes to the build's graph.
func (b *build) addBranches(groups []*group) error {
	gp := b.src.GetGraph()
	readers := map[string][]use{}
	for i, n := range gp.GetNode() {
		for j, in := range n.GetInput() {
			readers[in] = append(readers[in], use{i, j})
		}
	}
	inits := map[string]*onnx.TensorProto{}
	for _, tp := range gp.GetInitializer() {
		inits[tp.GetName()] = tp
	}
	at := map[int]site{}
	for _, g := range groups {
		tp := inits[g.weight]
		if tp == nil {
			return fmt.Errorf("initializer %q of layer %s is not in the model", g.weight, g.layer)
		}
		shape := make([]int, len(tp.GetDims()))
		for i, d := range tp.GetDims() {
			shape[i] = int(d)
		}
		if onnx.TensorProto_DataType(tp.GetDataType()) != onnx.TensorProto_FLOAT || !g.fits(shape) {
			return fmt.Errorf("initializer %q is %s %v; the LoRA of %s needs float32 %s",
				g.weight, onnx.TensorProto_DataType(tp.GetDataType()), tp.GetDims(), g.layer, g.wantShape())
		}
		sites, err := findSites(gp, readers, g)
		if err != nil {
			return err
		}
		for _, s := range sites {
			if _, dup := at[s.node]; dup {
				return fmt.Errorf("node %q gets two LoRA branches", gp.Node[s.node].GetName())
			}
			at[s.node] = s
		}
	}

	values, nodeNames := names{}, names{}
	graphNames(gp, values, nodeNames)
	var newInits []*onnx.TensorProto
	addInit := func(base string, t *graph.Tensor) string {
		name := values.fresh(base)
		dims := make([]int64, len(t.Shape))
		for i, d := range t.Shape {
			dims[i] = int64(d)
		}
		newInits = append(newInits, &onnx.TensorProto{Name: proto.String(name), Dims: dims,
			DataType: proto.Int32(int32(onnx.TensorProto_FLOAT)), RawData: le32(t)})
		return name
	}
	type factors struct{ aT, bT string }
	made := map[*group]factors{}
	type scaleKey struct {
		g *group
		v float32
	}
	scales := map[scaleKey]string{}
	nodes := make([]*onnx.NodeProto, 0, len(gp.GetNode())+8*len(at))
	for i, n := range gp.GetNode() {
		s, ok := at[i]
		if !ok {
			nodes = append(nodes, n)
			continue
		}
		g := s.g
		y := n.GetOutput()[0]
		base := values.fresh(y + "_base")
		nn := shallow(n)
		nn.Output = slices.Clone(n.GetOutput())
		nn.Output[0] = base
		nodes = append(nodes, nn)
		prefix := n.GetName()
		if prefix == "" {
			prefix = g.layer
		}
		add := func(op, name string, attrs []*onnx.AttributeProto, out string, in ...string) string {
			nodes = append(nodes, &onnx.NodeProto{Name: proto.String(nodeNames.fresh(prefix + "/lora/" + name)),
				OpType: proto.String(op), Input: in, Output: []string{out}, Attribute: attrs})
			b.added++
			return out
		}
		swap := func() []*onnx.AttributeProto {
			return []*onnx.AttributeProto{{Name: proto.String("perm"), Type: onnx.AttributeProto_INTS.Enum(), Ints: []int64{1, 0}}}
		}
		f, ok := made[g]
		if !ok {
			a := addInit(g.layer+".lora_A.weight", g.a)
			bb := addInit(g.layer+".lora_B.weight", g.b)
			f.aT = add("Transpose", "Transpose_A", swap(), values.fresh(g.layer+".lora_A.weight_T"), a)
			f.bT = add("Transpose", "Transpose_B", swap(), values.fresh(g.layer+".lora_B.weight_T"), bb)
			made[g] = f
		}
		x := s.x
		if s.transX {
			x = add("Transpose", "Transpose_x", swap(), values.fresh(y+"_lora_x"), x)
		}
		low := add("MatMul", "MatMul_A", nil, values.fresh(y+"_lora_xA"), x, f.aT)
		low = add("MatMul", "MatMul_B", nil, values.fresh(y+"_lora_xAB"), low, f.bT)
		if sc := s.alpha * g.scale; sc != 1 {
			name, ok := scales[scaleKey{g, sc}]
			if !ok {
				name = addInit(g.layer+".lora_scale", graph.ScalarF32(sc))
				scales[scaleKey{g, sc}] = name
			}
			low = add("Mul", "Mul_scale", nil, values.fresh(y+"_lora"), low, name)
		}
		add("Add", "Add", nil, y, base, low)
	}
	b.graph.Node = nodes
	b.graph.Initializer = append(slices.Clip(b.graph.Initializer), newInits...)
	b.addedIni = len(newInits)
	if b.src.GetIrVersion() < 4 {
		// before IR 4 every initializer is also a graph input
		inputs := slices.Clone(b.graph.GetInput())
		for _, tp := range newInits {
			shape := &onnx.TensorShapeProto{}
			for _, d := range tp.GetDims() {
				shape.Dim = append(shape.Dim, &onnx.TensorShapeProto_Dimension{Value: &onnx.TensorShapeProto_Dimension_DimValue{DimValue: d}})
			}
			inputs = append(inputs, &onnx.ValueInfoProto{Name: tp.Name, Type: &onnx.TypeProto{Value: &onnx.TypeProto_TensorType{
				TensorType: &onnx.TypeProto_Tensor{ElemType: proto.Int32(int32(onnx.TensorProto_FLOAT)), Shape: shape}}}})
		}
		b.graph.Input = inputs
	}
	return nil
}
