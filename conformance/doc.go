// Package conformance checks the forward pass against the references: the
// PyTorch goldens stored with the fixtures, and onnxruntime run on the same
// models and inputs (through fixtures/ort/run.mjs, when node and the
// onnxruntime-node package are installed). It holds only tests.
package conformance
