package conformance

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/onnx"
)

// ONNX's own operator tests (onnx.backend.test, the "node" cases), generated
// by fixtures/gen/onnx_node_tests.py into $HYPERAT_ONNX_TESTS. Every case
// whose nodes are all operators the importer converts (docs/OPS.md) runs
// through the importer and a compiled program, except the cases listed in
// onnxNodeSkips, each with its reason.
const (
	onnxTestsEnv        = "HYPERAT_ONNX_TESTS"
	onnxTestsRequireEnv = "HYPERAT_REQUIRE_ONNX_TESTS"
	// ONNX's backend test runner compares with numpy's assert_allclose at
	// these defaults (onnx/backend/test/runner: rtol 1e-3, atol 1e-7); the
	// node cases set no tolerance of their own.
	onnxRtol = 1e-3
	onnxAtol = 1e-7
)

// shapeOperands lists, per operator, the inputs the engine needs at compile
// time (shapes, axes, bounds of a shape): shapes are static once the batch
// size is fixed (docs/OPS.md). A graph input read there becomes a constant
// holding the case's data.
var shapeOperands = map[string][]int{
	"Reshape":         {1},
	"Expand":          {1},
	"Tile":            {1},
	"Slice":           {1, 2, 3, 4},
	"Squeeze":         {1},
	"Unsqueeze":       {1},
	"Split":           {1},
	"ReduceSum":       {1},
	"ReduceMean":      {1},
	"ReduceMax":       {1},
	"ConstantOfShape": {0},
	"Range":           {0, 1, 2},
	"Dropout":         {1, 2}, // ratio, training_mode
	"Pad":             {1, 3}, // pads, axes
}

// onnxNodeSkips are the cases out of the engine's scope, by name, with the
// reason (docs/OPS.md lists the same limits). Any other case must pass.
var onnxNodeSkips = map[string]string{
	// element types the engine does not represent
	"test_cast_FLOAT_to_STRING":                "strings are not a type of the engine",
	"test_cast_STRING_to_FLOAT":                "strings are not a type of the engine",
	"test_castlike_FLOAT_to_STRING_expanded":   "strings are not a type of the engine",
	"test_castlike_STRING_to_FLOAT_expanded":   "strings are not a type of the engine",
	"test_cast_FLOAT_to_BFLOAT16":              "bfloat16 is not a type of the engine: Cast to it keeps float32's precision, the case wants bfloat16's 8 bits",
	"test_castlike_FLOAT_to_BFLOAT16_expanded": "bfloat16 is not a type of the engine: Cast to it keeps float32's precision, the case wants bfloat16's 8 bits",
	// sequences and optionals
	"test_identity_sequence": "sequences are not a type of the engine",
	"test_identity_opt":      "optionals are not a type of the engine",
	// training-mode Dropout drops at random
	"test_training_dropout":              "training-mode Dropout with a ratio above 0 is random",
	"test_training_dropout_default":      "training-mode Dropout with a ratio above 0 is random",
	"test_training_dropout_default_mask": "training-mode Dropout with a ratio above 0 is random",
	"test_training_dropout_mask":         "training-mode Dropout with a ratio above 0 is random",
	// opsets before 7
	"test_not_2d":                        "opset 1: the importer reads opsets 7 to 21",
	"test_not_3d":                        "opset 1: the importer reads opsets 7 to 21",
	"test_not_4d":                        "opset 1: the importer reads opsets 7 to 21",
	"test_globalaveragepool":             "opset 1: the importer reads opsets 7 to 21",
	"test_globalaveragepool_precomputed": "opset 1: the importer reads opsets 7 to 21",
	"test_hardsigmoid":                   "opset 6: the importer reads opsets 7 to 21",
	"test_hardsigmoid_default":           "opset 6: the importer reads opsets 7 to 21",
	"test_hardsigmoid_example":           "opset 6: the importer reads opsets 7 to 21",
	// training-mode BatchNormalization (batch statistics)
	"test_batchnorm_epsilon_training_mode": "training-mode BatchNormalization (batch statistics) is not supported",
	"test_batchnorm_example_training_mode": "training-mode BatchNormalization (batch statistics) is not supported",
	// Einsum's diagonals
	"test_einsum_batch_diagonal": "Einsum with a label repeated within one operand (a diagonal) is not supported",
	// faults of the case itself (ONNX 1.12)
	"test_castlike_BFLOAT16_to_FLOAT_expanded": "its data gives input like as [1], its model declares [3, 4]",
}

func onnxTestsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(onnxTestsEnv)
	if dir == "" {
		const how = "generate them with `/usr/bin/python3 fixtures/gen/onnx_node_tests.py DIR` and set " + onnxTestsEnv + "=DIR"
		if os.Getenv(onnxTestsRequireEnv) != "" {
			t.Fatalf("%s is set but %s is not: %s", onnxTestsRequireEnv, onnxTestsEnv, how)
		}
		t.Skipf("ONNX's operator tests are not here: %s", how)
	}
	if _, err := os.Stat(filepath.Join(dir, "node")); err != nil {
		t.Fatalf("%s=%s holds no node/ folder of ONNX test cases: %v", onnxTestsEnv, dir, err)
	}
	return filepath.Join(dir, "node")
}

func TestONNXNodeCases(t *testing.T) {
	dir := onnxTestsDir(t)
	supported := map[string]bool{}
	for _, op := range onnximport.SupportedOps() {
		supported[op] = true
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var run, passed, skipped, other int
	seen := map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || !strings.HasPrefix(name, "test_") {
			continue
		}
		m := readModel(t, filepath.Join(dir, name, "model.onnx"))
		if !allSupported(m, supported) {
			other++
			continue
		}
		if reason, ok := onnxNodeSkips[name]; ok {
			seen[name] = true
			skipped++
			t.Run(name, func(t *testing.T) { t.Skip(reason) })
			continue
		}
		run++
		if t.Run(name, func(t *testing.T) { runNodeCase(t, filepath.Join(dir, name), m) }) {
			passed++
		}
	}
	var stale []string
	for name := range onnxNodeSkips {
		if !seen[name] {
			stale = append(stale, name)
		}
	}
	sort.Strings(stale)
	for _, name := range stale {
		t.Errorf("skip list names %s, which is not a generated case of a supported operator", name)
	}
	t.Logf("ONNX node cases: %d run, %d passed, %d skipped by name; %d cases of operators not supported", run, passed, skipped, other)
}

func readModel(t *testing.T, path string) *onnx.ModelProto {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := onnximport.Decode(b)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// allSupported: every node of the model is a default-domain operator the
// importer converts.
func allSupported(m *onnx.ModelProto, supported map[string]bool) bool {
	for _, n := range m.GetGraph().GetNode() {
		if d := n.GetDomain(); (d != "" && d != "ai.onnx") || !supported[n.GetOpType()] {
			return false
		}
	}
	return true
}

// readTensor reads a TensorProto file. ONNX 1.12 writes bfloat16 data as
// uint16 tensors of the same bits: declared (the type the model declares
// for it) bfloat16 reads them as such.
func readTensor(t *testing.T, path string, declared int32) *graph.Tensor {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var tp onnx.TensorProto
	if err := proto.Unmarshal(b, &tp); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	bf16 := int32(onnx.TensorProto_BFLOAT16)
	if declared == bf16 && tp.GetDataType() == int32(onnx.TensorProto_UINT16) {
		tp.DataType = proto.Int32(bf16)
	}
	x, err := onnximport.TensorFromProto(&tp)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return x
}

// runNodeCase runs each of the case's data sets.
func runNodeCase(t *testing.T, dir string, m *onnx.ModelProto) {
	gp := m.GetGraph()
	elem := func(vi *onnx.ValueInfoProto) int32 { return vi.GetType().GetTensorType().GetElemType() }
	sets, _ := filepath.Glob(filepath.Join(dir, "test_data_set_*"))
	if len(sets) == 0 {
		t.Fatal("no test_data_set_*")
	}
	for _, set := range sets {
		var ins, outs []*graph.Tensor
		for i := 0; ; i++ {
			p := filepath.Join(set, fmt.Sprintf("input_%d.pb", i))
			if _, err := os.Stat(p); err != nil {
				break
			}
			declared := int32(0)
			if i < len(gp.GetInput()) {
				declared = elem(gp.GetInput()[i])
			}
			ins = append(ins, readTensor(t, p, declared))
		}
		for i := 0; ; i++ {
			p := filepath.Join(set, fmt.Sprintf("output_%d.pb", i))
			if _, err := os.Stat(p); err != nil {
				break
			}
			declared := int32(0)
			if i < len(gp.GetOutput()) {
				declared = elem(gp.GetOutput()[i])
			}
			outs = append(outs, readTensor(t, p, declared))
		}
		if err := runDataSet(m, ins, outs); err != nil {
			t.Errorf("%s: %v", filepath.Base(set), err)
		}
	}
}

// runDataSet imports the model with its shape operands as constants,
// compiles it for the data's shapes, runs it and compares every output.
func runDataSet(m *onnx.ModelProto, ins, want []*graph.Tensor) error {
	gp := m.GetGraph()
	if len(ins) != len(gp.GetInput()) || len(want) != len(gp.GetOutput()) {
		return fmt.Errorf("%d inputs and %d outputs for a graph of %d and %d", len(ins), len(want), len(gp.GetInput()), len(gp.GetOutput()))
	}
	shapeInput := map[string]bool{}
	for _, n := range gp.GetNode() {
		for _, i := range shapeOperands[n.GetOpType()] {
			if i < len(n.GetInput()) {
				shapeInput[n.GetInput()[i]] = true
			}
		}
	}
	mc := proto.Clone(m).(*onnx.ModelProto)
	g := mc.GetGraph()
	g.Input = nil
	var feed []*graph.Tensor
	shapes := map[string][]int{}
	for i, vi := range gp.GetInput() {
		if shapeInput[vi.GetName()] {
			tp, err := tensorProto(vi.GetName(), ins[i])
			if err != nil {
				return err
			}
			g.Initializer = append(g.Initializer, tp)
			continue
		}
		g.Input = append(g.Input, vi)
		feed = append(feed, ins[i])
		shapes[vi.GetName()] = ins[i].Shape
	}
	im, err := onnximport.Import(mc, "")
	if err != nil {
		return fmt.Errorf("import: %v", err)
	}
	p, err := compile.Compile(im.Graph, compile.Options{Shapes: shapes, Verify: true})
	if err != nil {
		return fmt.Errorf("compile: %v", err)
	}
	got, err := p.Run(feed...)
	if err != nil {
		return fmt.Errorf("run: %v", err)
	}
	if len(got) != len(want) {
		return fmt.Errorf("%d outputs, want %d", len(got), len(want))
	}
	for i := range want {
		if err := allClose(got[i], want[i]); err != nil {
			return fmt.Errorf("output %d (%s): %v", i, gp.GetOutput()[i].GetName(), err)
		}
	}
	return nil
}

// tensorProto writes an IR tensor as an initializer of the type the IR
// holds (the importer widens integers to int64 and reads floats as float32).
func tensorProto(name string, x *graph.Tensor) (*onnx.TensorProto, error) {
	tp := &onnx.TensorProto{Name: proto.String(name)}
	for _, d := range x.Shape {
		tp.Dims = append(tp.Dims, int64(d))
	}
	switch x.DType {
	case graph.Float32:
		tp.DataType = proto.Int32(int32(onnx.TensorProto_FLOAT))
		tp.FloatData = append([]float32{}, x.F...)
	case graph.Int64:
		tp.DataType = proto.Int32(int32(onnx.TensorProto_INT64))
		tp.Int64Data = append([]int64{}, x.I...)
	case graph.Bool:
		tp.DataType = proto.Int32(int32(onnx.TensorProto_BOOL))
		for _, b := range x.B {
			v := int32(0)
			if b {
				v = 1
			}
			tp.Int32Data = append(tp.Int32Data, v)
		}
	default:
		return nil, fmt.Errorf("input %s: dtype %s", name, x.DType)
	}
	return tp, nil
}

// allClose compares as numpy.testing.assert_allclose does: same shape,
// |got - want| <= atol + rtol |want| elementwise, NaN where NaN is wanted;
// integers and booleans exactly.
func allClose(got, want *graph.Tensor) error {
	if got.DType != want.DType {
		return fmt.Errorf("dtype %s, want %s", got.DType, want.DType)
	}
	if fmt.Sprint(got.Shape) != fmt.Sprint(want.Shape) {
		return fmt.Errorf("shape %v, want %v", got.Shape, want.Shape)
	}
	bad, first := 0, -1
	switch want.DType {
	case graph.Float32:
		for i, w := range want.F {
			g, wf := float64(got.F[i]), float64(w)
			ok := g == wf || (math.IsNaN(g) && math.IsNaN(wf)) ||
				(!math.IsInf(wf, 0) && math.Abs(g-wf) <= onnxAtol+onnxRtol*math.Abs(wf))
			if !ok {
				bad++
				if first < 0 {
					first = i
				}
			}
		}
		if bad > 0 {
			return fmt.Errorf("%d of %d values differ beyond rtol %g, atol %g; first at %d: %g, want %g",
				bad, len(want.F), onnxRtol, onnxAtol, first, got.F[first], want.F[first])
		}
	case graph.Int64:
		for i, w := range want.I {
			if got.I[i] != w {
				bad++
				if first < 0 {
					first = i
				}
			}
		}
		if bad > 0 {
			return fmt.Errorf("%d of %d values differ; first at %d: %d, want %d", bad, len(want.I), first, got.I[first], want.I[first])
		}
	case graph.Bool:
		for i, w := range want.B {
			if got.B[i] != w {
				bad++
				if first < 0 {
					first = i
				}
			}
		}
		if bad > 0 {
			return fmt.Errorf("%d of %d values differ; first at %d: %v, want %v", bad, len(want.B), first, got.B[first], want.B[first])
		}
	}
	return nil
}
