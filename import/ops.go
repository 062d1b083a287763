package onnximport

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/onnx"
)

// Each converter follows the operator's page at https://onnx.ai/onnx/operators/
// (defaults from the spec, versions noted where the form changed).

func init() {
	// Elementwise operators keep their ONNX form (numpy broadcasting since opset 7).
	for _, op := range []string{"Add", "Sub", "Mul", "Div", "Pow", "Sqrt", "Erf", "Exp", "Log", "Neg",
		"Abs", "Reciprocal", "Tanh", "Sigmoid", "Relu", "Equal", "Less", "Greater", "LessOrEqual",
		"GreaterOrEqual", "And", "Or", "Not", "Where", "Max", "Min", "Sign"} {
		converters[op] = plain(op)
	}
	converters["Mod"] = convMod
	converters["Gelu"] = convGelu
	converters["Identity"] = convIdentity
	converters["Dropout"] = convDropout
	converters["Constant"] = convConstant
	converters["Cast"] = convCast
	converters["Softmax"] = convSoftmax
	converters["LogSoftmax"] = convSoftmax
	converters["LayerNormalization"] = convLayerNorm
	converters["ReduceMean"] = convReduce
	converters["ReduceSum"] = convReduce
	converters["ReduceMax"] = convReduce
	converters["ReduceL2"] = convReduce
	converters["MatMul"] = plain("MatMul")
	converters["Gemm"] = convGemm
	converters["Conv"] = convConv
	converters["Reshape"] = convReshape
	converters["Transpose"] = convTranspose
	converters["Concat"] = convConcat
	converters["Split"] = convSplit
	converters["Slice"] = convSlice
	converters["Squeeze"] = convSqueeze
	converters["Unsqueeze"] = convSqueeze
	converters["Flatten"] = convFlatten
	converters["Gather"] = convGather
	converters["Shape"] = convShape
	converters["Size"] = plain("Size")
	converters["ConstantOfShape"] = convConstantOfShape
	converters["Expand"] = plain("Expand")
	converters["Range"] = plain("Range")
	converters["Tile"] = plain("Tile")
	converters["Clip"] = convClip
	converters["Pad"] = convPad
	converters["AveragePool"] = convAveragePool
	converters["GlobalAveragePool"] = plain("GlobalAveragePool")
	converters["BatchNormalization"] = convBatchNorm
	converters["ScatterND"] = convScatterND
	converters["Einsum"] = convEinsum
	converters["HardSigmoid"] = convHardSigmoid
	converters["HardSwish"] = convHardSwish
}

func plain(op string) converter {
	return func(n *nodeCtx) error {
		info, ok := graph.Ops[op]
		if !ok {
			return fmt.Errorf("operator %s is not registered with the IR (package compile registers every operator; link it)", op)
		}
		if len(n.in) < info.MinIn || (info.MaxIn >= 0 && len(n.in) > info.MaxIn) {
			return fmt.Errorf("has %d inputs", len(n.in))
		}
		if err := n.needInputs(info.MinIn); err != nil {
			return err
		}
		n.emit(op, n.in, nil)
		return nil
	}
}

func convMod(n *nodeCtx) error {
	if err := n.needInputs(2); err != nil {
		return err
	}
	n.emit("Mod", n.in, graph.Attrs{"fmod": n.int("fmod", 0)})
	return nil
}

// Gelu (opset 20): approximate "none" (erf) or "tanh".
func convGelu(n *nodeCtx) error {
	approx := n.str("approximate", "none")
	if approx != "none" && approx != "tanh" {
		return fmt.Errorf("approximate=%q is not one of none, tanh", approx)
	}
	n.emit("Gelu", n.in[:1], graph.Attrs{"approximate": approx})
	return nil
}

func convIdentity(n *nodeCtx) error {
	if err := n.needInputs(1); err != nil {
		return err
	}
	n.bind(0, n.in[0])
	return nil
}

// Dropout is the identity at inference (training_mode false, its default)
// and in training mode with ratio 0, where nothing is dropped; its optional
// mask output is then all true (opset 10+: bool; before: ones of the
// input's type). Training mode with a ratio above 0 is random and not
// supported.
func convDropout(n *nodeCtx) error {
	if err := n.needInputs(1); err != nil {
		return err
	}
	if tm := n.input(2); tm != nil {
		if !tm.IsConst() || len(tm.Const.B) != 1 {
			return errors.New("training_mode must be a constant (shapes and modes are fixed at compile time)")
		}
		if tm.Const.B[0] {
			r := n.input(1) // default ratio 0.5
			if r == nil || !r.IsConst() || len(r.Const.F) != 1 || r.Const.F[0] != 0 {
				return errors.New("training-mode Dropout with a ratio above 0 is random and not supported")
			}
		}
	}
	n.bind(0, n.in[0])
	if outs := n.p.GetOutput(); len(outs) > 1 && outs[1] != "" {
		one := &graph.Tensor{DType: graph.Bool, Shape: []int{1}, B: []bool{true}}
		if n.opset < 10 {
			one = graph.F32([]int{1}, []float32{1})
		}
		shape := n.emitAux("Shape", n.in[:1], nil)
		mask := n.g.AddNode("ConstantOfShape", n.p.GetName(), []*graph.Value{shape}, graph.Attrs{"value": one}, outs[1])
		n.values[outs[1]] = mask.Outputs[0]
	}
	return nil
}

// Constant: exactly one of value, value_float(s), value_int(s) (opset 12+).
func convConstant(n *nodeCtx) error {
	var t *graph.Tensor
	switch {
	case n.has("value"):
		var err error
		t, _, err = n.tensorAttr("value")
		if err != nil {
			return err
		}
	case n.has("value_float"):
		t = graph.ScalarF32(n.float("value_float", 0))
	case n.has("value_floats"):
		f := n.attrs["value_floats"].GetFloats()
		t = graph.F32([]int{len(f)}, append([]float32{}, f...))
	case n.has("value_int"):
		t = graph.I64(nil, []int64{n.int("value_int", 0)})
	case n.has("value_ints"):
		v, _ := n.ints("value_ints")
		t = graph.I64([]int{len(v)}, v)
	default:
		return errors.New("only tensor, float and int constants are supported")
	}
	name := n.p.GetOutput()[0]
	v := n.g.Const(name, t)
	n.bind(0, v)
	return nil
}

func convCast(n *nodeCtx) error {
	to := n.int("to", 0)
	dt, err := dtypeOf(int32(to))
	if err != nil {
		return fmt.Errorf("cast to %s: %v", onnx.TensorProto_DataType(to), err)
	}
	n.emit("Cast", n.in[:1], graph.Attrs{"to": int64(dt)})
	return nil
}

// Softmax/LogSoftmax: since opset 13 along one axis (default -1); before, the
// input was coerced to 2-D at axis (default 1), which we express with Flatten
// and a Reshape back to the input's shape.
func convSoftmax(n *nodeCtx) error {
	op := n.p.GetOpType()
	x := n.in[0]
	if n.opset >= 13 {
		n.emit(op, []*graph.Value{x}, graph.Attrs{"axis": n.int("axis", -1)})
		return nil
	}
	axis := n.int("axis", 1)
	flat := n.emitAux("Flatten", []*graph.Value{x}, graph.Attrs{"axis": axis})
	sm := n.emitAux(op, []*graph.Value{flat}, graph.Attrs{"axis": int64(1)})
	shape := n.emitAux("Shape", []*graph.Value{x}, graph.Attrs{})
	n.emit("Reshape", []*graph.Value{sm, shape}, graph.Attrs{"allowzero": int64(0)})
	return nil
}

// LayerNormalization (opset 17): axis -1, epsilon 1e-5; the optional Mean
// and InvStdDev outputs are the statistics y was computed with (in float32,
// whatever stash_type asks: the IR computes them in float64 and stores float32).
func convLayerNorm(n *nodeCtx) error {
	if err := n.needInputs(2); err != nil {
		return err
	}
	n.emit("LayerNormalization", n.in, graph.Attrs{
		"axis": n.int("axis", -1), "epsilon": n.float("epsilon", 1e-5)})
	return nil
}

// Reduce*: axes became an input in opset 18 (ReduceSum: 13); keepdims 1;
// noop_with_empty_axes 0.
func convReduce(n *nodeCtx) error {
	op := n.p.GetOpType()
	inputs := []*graph.Value{n.in[0]}
	axesInput := n.opset >= 18 || (op == "ReduceSum" && n.opset >= 13)
	if axesInput {
		if a := n.input(1); a != nil {
			inputs = append(inputs, a)
		}
	} else if axes, ok := n.ints("axes"); ok {
		inputs = append(inputs, n.constInts("axes", axes))
	}
	n.emit(op, inputs, graph.Attrs{"keepdims": n.int("keepdims", 1), "noop_with_empty_axes": n.int("noop_with_empty_axes", 0)})
	return nil
}

// Gemm: Y = alpha op(A) op(B) + beta C.
func convGemm(n *nodeCtx) error {
	if err := n.needInputs(2); err != nil {
		return err
	}
	n.emit("Gemm", n.in, graph.Attrs{
		"alpha": n.float("alpha", 1), "beta": n.float("beta", 1),
		"transA": n.int("transA", 0), "transB": n.int("transB", 0)})
	return nil
}

// Conv: auto_pad NOTSET, dilations/strides 1, group 1, pads 0; kernel_shape
// from the weight when absent.
func convConv(n *nodeCtx) error {
	if err := n.needInputs(2); err != nil {
		return err
	}
	attrs := graph.Attrs{"group": n.int("group", 1), "auto_pad": n.str("auto_pad", "NOTSET")}
	for _, k := range []string{"dilations", "strides", "pads", "kernel_shape"} {
		if v, ok := n.ints(k); ok {
			attrs[k] = v
		}
	}
	n.emit("Conv", n.in, attrs)
	return nil
}

// Reshape: shape became an input in opset 5; allowzero added in 14 (default 0).
func convReshape(n *nodeCtx) error {
	if err := n.needInputs(2); err != nil {
		return err
	}
	n.emit("Reshape", n.in[:2], graph.Attrs{"allowzero": n.int("allowzero", 0)})
	return nil
}

func convTranspose(n *nodeCtx) error {
	attrs := graph.Attrs{}
	if p, ok := n.ints("perm"); ok {
		attrs["perm"] = p
	}
	n.emit("Transpose", n.in[:1], attrs)
	return nil
}

func convConcat(n *nodeCtx) error {
	if !n.has("axis") {
		return errors.New("attribute axis is required")
	}
	for i, v := range n.in {
		if v == nil {
			return fmt.Errorf("input %d is empty", i)
		}
	}
	n.emit("Concat", n.in, graph.Attrs{"axis": n.int("axis", 0)})
	return nil
}

// Split: split sizes were an attribute before opset 13, an input after; opset 18
// added num_outputs. The IR always records the number of outputs.
func convSplit(n *nodeCtx) error {
	inputs := []*graph.Value{n.in[0]}
	if n.opset >= 13 {
		if s := n.input(1); s != nil {
			inputs = append(inputs, s)
		}
	} else if s, ok := n.ints("split"); ok {
		inputs = append(inputs, n.constInts("split", s))
	}
	n.emit("Split", inputs, graph.Attrs{"axis": n.int("axis", 0), "num_outputs": int64(len(n.p.GetOutput()))})
	return nil
}

// Slice: starts/ends/axes attributes before opset 10, inputs (with steps) after.
func convSlice(n *nodeCtx) error {
	if n.opset >= 10 {
		if err := n.needInputs(3); err != nil {
			return err
		}
		n.emit("Slice", n.in, nil)
		return nil
	}
	starts, _ := n.ints("starts")
	ends, _ := n.ints("ends")
	inputs := []*graph.Value{n.in[0], n.constInts("starts", starts), n.constInts("ends", ends)}
	if axes, ok := n.ints("axes"); ok {
		inputs = append(inputs, n.constInts("axes", axes))
	}
	n.emit("Slice", inputs, nil)
	return nil
}

// Squeeze/Unsqueeze: axes moved from attribute to input in opset 13.
func convSqueeze(n *nodeCtx) error {
	op := n.p.GetOpType()
	inputs := []*graph.Value{n.in[0]}
	if n.opset >= 13 {
		if a := n.input(1); a != nil {
			inputs = append(inputs, a)
		}
	} else if axes, ok := n.ints("axes"); ok {
		inputs = append(inputs, n.constInts("axes", axes))
	}
	if op == "Unsqueeze" && len(inputs) < 2 {
		return errors.New("axes are required")
	}
	n.emit(op, inputs, nil)
	return nil
}

func convFlatten(n *nodeCtx) error {
	n.emit("Flatten", n.in[:1], graph.Attrs{"axis": n.int("axis", 1)})
	return nil
}

func convGather(n *nodeCtx) error {
	if err := n.needInputs(2); err != nil {
		return err
	}
	n.emit("Gather", n.in, graph.Attrs{"axis": n.int("axis", 0)})
	return nil
}

// Shape: start/end (opset 15) select a range of dims.
func convShape(n *nodeCtx) error {
	attrs := graph.Attrs{"start": n.int("start", 0)}
	if n.has("end") {
		attrs["end"] = n.int("end", 0)
	}
	n.emit("Shape", n.in[:1], attrs)
	return nil
}

// ConstantOfShape: value defaults to float32 0.
func convConstantOfShape(n *nodeCtx) error {
	t, ok, err := n.tensorAttr("value")
	if err != nil {
		return err
	}
	if !ok {
		t = graph.ScalarF32(0)
	}
	if t.Numel() != 1 {
		return errors.New("value must hold one element")
	}
	n.emit("ConstantOfShape", n.in[:1], graph.Attrs{"value": t})
	return nil
}

// Clip: min/max attributes before opset 11, optional inputs after.
func convClip(n *nodeCtx) error {
	if n.opset >= 11 {
		n.emit("Clip", n.in, nil)
		return nil
	}
	lo := n.g.Const(n.p.GetName()+"_min", graph.ScalarF32(n.float("min", -3.4028234663852886e38)))
	hi := n.g.Const(n.p.GetName()+"_max", graph.ScalarF32(n.float("max", 3.4028234663852886e38)))
	n.emit("Clip", []*graph.Value{n.in[0], lo, hi}, nil)
	return nil
}

// Pad: mode constant (default), reflect, edge, wrap (opset 19). Before opset
// 11 pads and value are attributes; from 11 pads and constant_value are
// inputs; opset 18 adds the axes input.
func convPad(n *nodeCtx) error {
	if err := n.needInputs(1); err != nil {
		return err
	}
	mode := n.str("mode", "constant")
	switch mode {
	case "constant", "reflect", "edge", "wrap":
	default:
		return fmt.Errorf("mode %q is not one of constant, reflect, edge, wrap", mode)
	}
	attrs := graph.Attrs{"mode": mode}
	if n.opset < 11 {
		pads, ok := n.ints("pads")
		if !ok {
			return errors.New("attribute pads is required")
		}
		v := n.g.Const(n.p.GetName()+"_value", graph.ScalarF32(n.float("value", 0)))
		n.emit("Pad", []*graph.Value{n.in[0], n.constInts("pads", pads), v}, attrs)
		return nil
	}
	if err := n.needInputs(2); err != nil {
		return err
	}
	inputs := []*graph.Value{n.in[0], n.in[1], n.input(2)}
	if n.opset >= 18 && n.input(3) != nil {
		inputs = append(inputs, n.in[3])
	}
	for len(inputs) > 2 && inputs[len(inputs)-1] == nil {
		inputs = inputs[:len(inputs)-1]
	}
	n.emit("Pad", inputs, attrs)
	return nil
}

// AveragePool: auto_pad NOTSET, ceil_mode 0 (opset 10), count_include_pad 0
// (opset 7), dilations 1 (opset 19), pads 0, strides 1; kernel_shape required.
func convAveragePool(n *nodeCtx) error {
	if err := n.needInputs(1); err != nil {
		return err
	}
	if _, ok := n.ints("kernel_shape"); !ok {
		return errors.New("attribute kernel_shape is required")
	}
	attrs := graph.Attrs{"auto_pad": n.str("auto_pad", "NOTSET"), "ceil_mode": n.int("ceil_mode", 0),
		"count_include_pad": n.int("count_include_pad", 0)}
	for _, k := range []string{"dilations", "strides", "pads", "kernel_shape"} {
		if v, ok := n.ints(k); ok {
			attrs[k] = v
		}
	}
	n.emit("AveragePool", n.in[:1], attrs)
	return nil
}

// BatchNormalization in inference form: y = (x - mean) / sqrt(var + epsilon)
// * scale + B with the running statistics. Training (opset 14's
// training_mode=1, or more than one output before it) computes batch
// statistics and is not supported, nor opset 7-8's spatial=0.
func convBatchNorm(n *nodeCtx) error {
	if err := n.needInputs(5); err != nil {
		return err
	}
	if n.int("training_mode", 0) != 0 {
		return errors.New("training_mode=1 (batch statistics) is not supported: export the model in eval mode")
	}
	for i, o := range n.p.GetOutput() {
		if i > 0 && o != "" && n.opset < 14 {
			return errors.New("the training outputs (mean, var, saved statistics) are not supported: export the model in eval mode")
		}
		if i > 0 && o != "" {
			return errors.New("the running mean and var outputs are training mode's and are not supported")
		}
	}
	if n.int("spatial", 1) == 0 {
		return errors.New("spatial=0 (per-activation statistics) is not supported")
	}
	n.emit("BatchNormalization", n.in[:5], graph.Attrs{"epsilon": n.float("epsilon", 1e-5)})
	return nil
}

// ScatterND: reduction none before opset 16; add, mul (16), max, min (18).
func convScatterND(n *nodeCtx) error {
	if err := n.needInputs(3); err != nil {
		return err
	}
	n.emit("ScatterND", n.in[:3], graph.Attrs{"reduction": n.str("reduction", "none")})
	return nil
}

// HardSigmoid: max(0, min(1, alpha x + beta)), alpha 0.2, beta 0.5.
func convHardSigmoid(n *nodeCtx) error {
	if err := n.needInputs(1); err != nil {
		return err
	}
	n.bind(0, hardSigmoid(n, n.in[0], n.float("alpha", 0.2), n.float("beta", 0.5)))
	return nil
}

// HardSwish (opset 14): x HardSigmoid(x) with alpha 1/6, beta 0.5.
func convHardSwish(n *nodeCtx) error {
	if err := n.needInputs(1); err != nil {
		return err
	}
	hs := hardSigmoid(n, n.in[0], 1.0/6, 0.5)
	n.emit("Mul", []*graph.Value{n.in[0], hs}, nil)
	return nil
}

func hardSigmoid(n *nodeCtx, x *graph.Value, alpha, beta float32) *graph.Value {
	c := func(name string, v float32) *graph.Value {
		return n.g.Const(n.p.GetName()+"_"+name, graph.ScalarF32(v))
	}
	y := n.emitAux("Mul", []*graph.Value{x, c("alpha", alpha)}, nil)
	y = n.emitAux("Add", []*graph.Value{y, c("beta", beta)}, nil)
	return n.emitAux("Clip", []*graph.Value{y, c("lo", 0), c("hi", 1)}, nil)
}

// Einsum, lowered to Transpose, Unsqueeze, Squeeze, ReduceSum, MatMul and
// Mul: labels only one operand has and the output lacks are summed first;
// operands are then combined left to right, by one batched MatMul where a
// pair shares one summed label and each keeps at most one label of its own,
// else by a broadcast Mul and a ReduceSum. An ellipsis needs its operand's
// rank in the graph; a label repeated within one operand (a diagonal) is not
// supported.
func convEinsum(n *nodeCtx) error {
	eq := strings.ReplaceAll(n.str("equation", ""), " ", "")
	if eq == "" {
		return errors.New("attribute equation is required")
	}
	ops, out, count, err := einsumLabels(n, eq)
	if err != nil {
		return err
	}
	inOut := map[int]bool{}
	for _, l := range out {
		inOut[l] = true
		if count[l] == 0 {
			return fmt.Errorf("equation %q: output label %q is in no operand", eq, rune(l))
		}
	}
	e := &einsum{n: n}
	// sum the labels only one operand has and the output lacks
	vals := append([]*graph.Value{}, n.in...)
	for i, l := range ops {
		var axes []int64
		var keep []int
		for k, x := range l {
			if count[x] == 1 && !inOut[x] {
				axes = append(axes, int64(k))
			} else {
				keep = append(keep, x)
			}
		}
		if len(axes) > 0 {
			vals[i] = e.aux("ReduceSum", graph.Attrs{"keepdims": int64(0)}, vals[i], n.constInts("axes", axes))
			ops[i] = keep
		}
	}
	acc, accL := vals[0], ops[0]
	for i := 1; i < len(vals); i++ {
		later := map[int]bool{}
		for _, l := range out {
			later[l] = true
		}
		for _, o := range ops[i+1:] {
			for _, l := range o {
				later[l] = true
			}
		}
		acc, accL = e.pair(acc, accL, vals[i], ops[i], later)
	}
	// transpose to the output's order
	res := e.permute(acc, accL, out)
	if res == n.in[0] || !e.made {
		res = e.aux("Identity", nil, res)
	}
	n.bind(0, res)
	return nil
}

// einsumLabels reads an Einsum equation into each operand's labels, the
// output's (the implicit form's when there is no "->") and how many operands
// hold each label: a letter is its rune, an ellipsis's dims are 1000+k,
// right-aligned across operands.
func einsumLabels(n *nodeCtx, eq string) (ops [][]int, out []int, count map[int]int, err error) {
	lhs, rhs, explicit := strings.Cut(eq, "->")
	terms := strings.Split(lhs, ",")
	if len(terms) != len(n.in) {
		return nil, nil, nil, fmt.Errorf("equation %q has %d operands, the node %d", eq, len(terms), len(n.in))
	}
	if err := n.needInputs(len(terms)); err != nil {
		return nil, nil, nil, err
	}
	// labels: letters are their rune; an ellipsis's dims are 1000+k, right-aligned.
	ell := 0
	for i, t := range terms {
		if strings.Contains(t, "...") {
			r := len(n.in[i].Shape)
			if n.in[i].Shape == nil {
				return nil, nil, nil, fmt.Errorf("equation %q: the rank of input %d is unknown, needed for its ellipsis", eq, i)
			}
			ell = max(ell, r-(len(t)-3))
		}
	}
	parse := func(t string, rank int) ([]int, error) {
		var out []int
		for i := 0; i < len(t); i++ {
			c := t[i]
			switch {
			case strings.HasPrefix(t[i:], "..."):
				e := rank - (len(t) - 3)
				if rank < 0 || e < 0 {
					return nil, fmt.Errorf("equation %q: the ellipsis does not fit", eq)
				}
				for k := 0; k < e; k++ {
					out = append(out, 1000+ell-e+k)
				}
				i += 2
			case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
				out = append(out, int(c))
			default:
				return nil, fmt.Errorf("equation %q: unexpected %q", eq, c)
			}
		}
		seen := map[int]bool{}
		for _, l := range out {
			if seen[l] {
				return nil, fmt.Errorf("equation %q: a label repeated within one operand (diagonal) is not supported", eq)
			}
			seen[l] = true
		}
		return out, nil
	}
	ops = make([][]int, len(terms))
	count = map[int]int{}
	for i, t := range terms {
		rank := -1
		if n.in[i].Shape != nil {
			rank = len(n.in[i].Shape)
		}
		l, err := parse(t, rank)
		if err != nil {
			return nil, nil, nil, err
		}
		if rank >= 0 && len(l) != rank {
			return nil, nil, nil, fmt.Errorf("equation %q: operand %d has %d labels for rank %d", eq, i, len(l), rank)
		}
		ops[i] = l
		for _, x := range l {
			count[x]++
		}
	}
	if explicit {
		if out, err = parse(rhs, ell+len(strings.ReplaceAll(rhs, "...", ""))); err != nil {
			return nil, nil, nil, err
		}
	} else {
		for k := 0; k < ell; k++ {
			out = append(out, 1000+k)
		}
		var letters []int
		for l, c := range count {
			if c == 1 && l < 1000 {
				letters = append(letters, l)
			}
		}
		sort.Ints(letters)
		out = append(out, letters...)
	}
	return ops, out, count, nil
}

type einsum struct {
	n    *nodeCtx
	made bool
}

func (e *einsum) aux(op string, attrs graph.Attrs, in ...*graph.Value) *graph.Value {
	e.made = true
	return e.n.emitAux(op, in, attrs)
}

// permute transposes v (labels from) into the order of to (same label set).
func (e *einsum) permute(v *graph.Value, from, to []int) *graph.Value {
	pos := map[int]int{}
	for i, l := range from {
		pos[l] = i
	}
	perm := make([]int64, len(to))
	id := true
	for i, l := range to {
		perm[i] = int64(pos[l])
		id = id && perm[i] == int64(i)
	}
	if id {
		return v
	}
	return e.aux("Transpose", graph.Attrs{"perm": perm}, v)
}

// align transposes v into the order of the labels of `to` it has, and
// unsqueezes the ones it lacks.
func (e *einsum) align(v *graph.Value, from, to []int) *graph.Value {
	has := map[int]bool{}
	for _, l := range from {
		has[l] = true
	}
	var sub []int
	var missing []int64
	for i, l := range to {
		if has[l] {
			sub = append(sub, l)
		} else {
			missing = append(missing, int64(i))
		}
	}
	v = e.permute(v, from, sub)
	if len(missing) > 0 {
		v = e.aux("Unsqueeze", nil, v, e.n.constInts("axes", missing))
	}
	return v
}

// pair combines two operands, summing the labels they share that neither
// the output nor a later operand has.
func (e *einsum) pair(a *graph.Value, al []int, b *graph.Value, bl []int, later map[int]bool) (*graph.Value, []int) {
	inA, inB := map[int]bool{}, map[int]bool{}
	for _, l := range al {
		inA[l] = true
	}
	for _, l := range bl {
		inB[l] = true
	}
	var batch, contract, aOnly, bOnly []int
	for _, l := range al {
		switch {
		case inB[l] && later[l]:
			batch = append(batch, l)
		case inB[l]:
			contract = append(contract, l)
		default:
			aOnly = append(aOnly, l)
		}
	}
	for _, l := range bl {
		if !inA[l] {
			bOnly = append(bOnly, l)
		}
	}
	cat := func(parts ...[]int) []int {
		var r []int
		for _, p := range parts {
			r = append(r, p...)
		}
		return r
	}
	if len(contract) == 1 && len(aOnly) <= 1 && len(bOnly) <= 1 {
		nb := int64(len(batch))
		x := e.permute(a, al, cat(batch, aOnly, contract))
		if len(aOnly) == 0 {
			x = e.aux("Unsqueeze", nil, x, e.n.constInts("axes", []int64{nb}))
		}
		y := e.permute(b, bl, cat(batch, contract, bOnly))
		if len(bOnly) == 0 {
			y = e.aux("Unsqueeze", nil, y, e.n.constInts("axes", []int64{nb + 1}))
		}
		r := e.aux("MatMul", nil, x, y)
		var sq []int64
		if len(aOnly) == 0 {
			sq = append(sq, nb)
		}
		if len(bOnly) == 0 {
			sq = append(sq, nb+1)
		}
		if len(sq) > 0 {
			r = e.aux("Squeeze", nil, r, e.n.constInts("axes", sq))
		}
		return r, cat(batch, aOnly, bOnly)
	}
	all := cat(batch, aOnly, bOnly, contract)
	r := e.aux("Mul", nil, e.align(a, al, all), e.align(b, bl, all))
	if len(contract) > 0 {
		axes := make([]int64, len(contract))
		for i := range contract {
			axes[i] = int64(len(all) - len(contract) + i)
		}
		r = e.aux("ReduceSum", graph.Attrs{"keepdims": int64(0)}, r, e.n.constInts("axes", axes))
	}
	return r, cat(batch, aOnly, bOnly)
}
