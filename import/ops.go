package onnximport

import (
	"errors"
	"fmt"

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
