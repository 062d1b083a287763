package graph

// OpInfo describes an operator for generic passes and the verifier.
type OpInfo struct {
	MinIn, MaxIn int // MaxIn < 0: variadic
	Outs         int // number of outputs; < 0: variable (Split)
	// Elementwise ops map each output element to the same element of the
	// (broadcast) inputs; fusion and gradient helpers use this.
	Elementwise bool
}

// Ops is the operator table: ONNX operators in their newest form, plus the
// project's own (marked in comments) that passes insert.
var Ops = map[string]OpInfo{
	// elementwise, numpy broadcasting
	"Add": {2, 2, 1, true}, "Sub": {2, 2, 1, true}, "Mul": {2, 2, 1, true}, "Div": {2, 2, 1, true},
	"Pow": {2, 2, 1, true}, "Mod": {2, 2, 1, true}, "Max": {1, -1, 1, true}, "Min": {1, -1, 1, true},
	"Equal": {2, 2, 1, true}, "Less": {2, 2, 1, true}, "Greater": {2, 2, 1, true},
	"LessOrEqual": {2, 2, 1, true}, "GreaterOrEqual": {2, 2, 1, true},
	"And": {2, 2, 1, true}, "Or": {2, 2, 1, true}, "Not": {1, 1, 1, true},
	"Where": {3, 3, 1, true},
	"Sqrt":  {1, 1, 1, true}, "Erf": {1, 1, 1, true}, "Exp": {1, 1, 1, true}, "Log": {1, 1, 1, true},
	"Neg": {1, 1, 1, true}, "Abs": {1, 1, 1, true}, "Reciprocal": {1, 1, 1, true},
	"Tanh": {1, 1, 1, true}, "Sigmoid": {1, 1, 1, true}, "Relu": {1, 1, 1, true},
	"Gelu": {1, 1, 1, true}, "Cast": {1, 1, 1, true}, "Identity": {1, 1, 1, true},
	"Clip": {1, 3, 1, true}, "Sign": {1, 1, 1, true},
	// structured
	"Softmax": {1, 1, 1, false}, "LogSoftmax": {1, 1, 1, false},
	"LayerNormalization": {2, 3, 1, false},
	"ReduceMean":         {1, 2, 1, false}, "ReduceSum": {1, 2, 1, false}, "ReduceMax": {1, 2, 1, false},
	"MatMul": {2, 2, 1, false}, "Gemm": {2, 3, 1, false}, "Conv": {2, 3, 1, false},
	"Reshape": {2, 2, 1, false}, "Transpose": {1, 1, 1, false}, "Concat": {1, -1, 1, false},
	"Split": {1, 2, -1, false}, "Slice": {3, 5, 1, false}, "Squeeze": {1, 2, 1, false},
	"Unsqueeze": {2, 2, 1, false}, "Flatten": {1, 1, 1, false}, "Gather": {2, 2, 1, false},
	"Shape": {1, 1, 1, false}, "Size": {1, 1, 1, false}, "ConstantOfShape": {1, 1, 1, false},
	"Expand": {2, 2, 1, false}, "Range": {3, 3, 1, false}, "Tile": {2, 2, 1, false},

	// project operators (domain "hyperat"), inserted by the gradient pass
	"SoftmaxGrad":   {2, 2, 1, false},  // (y, dy) -> dx for Softmax along attr axis
	"MatMulBias":    {3, 3, 1, false},  // (a, b, bias[n]) -> MatMul(a, b) + bias: a linear layer in one step
	"MatMulConcat":  {2, -1, 1, false}, // (a0, b0, a1, b1, ...) -> products written in place into one tensor; attr "products" ([]Attrs, one MatMul's each, with viewC)
	"LayerNormGrad": {3, 3, 3, false},  // (x, scale, dy) -> dx, dscale, dbias; attrs axis, epsilon
	"GeluGrad":      {2, 2, 1, false},  // (x, dy) -> dx, attr approximate
	"ConvGradInput": {2, 2, 1, false},  // (w, dy) -> dx; Conv's attrs plus "shape" of x
	"ConvGradW":     {2, 2, 1, false},  // (x, dy) -> dw; Conv's attrs plus "shape" of w
	"IndexGrad":     {1, 1, 1, false},  // dy into zeros of attr "shape" through a strided view (vshape, vstrides, voffset) or attr "map" ([]int32, scatter-add)
	"GatherGrad":    {2, 2, 1, false},  // (dy, indices) -> scatter-add into zeros of attr "shape" along attr axis
}

// OpDomain is the domain the project's own operators are exported under.
const OpDomain = "hyperat"
