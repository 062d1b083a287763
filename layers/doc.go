// Package layers finds the linear layers of a transformer in the graph IR:
// the products Match recognizes (a MatMul or Gemm reading a weight
// initializer, in either layout, and its bias), the transformer blocks and
// their qkv / q,k,v / proj / fc1 / fc2 layers, the classifier head, and
// their names (Recognize). It also names the weights a tuning changes
// (WeightKey) and writes them into a graph (ApplyWeights).
//
// It reads the IR only: the importer turns ONNX into a graph, and tuning and
// export find their layers here.
package layers
