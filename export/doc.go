// Package export writes a tuned model back into its original ONNX file.
//
// Merged writes the source ModelProto with only some initializers' data
// replaced (the merged LoRA deltas and the trained head): every other byte —
// nodes, names, the graph's inputs and outputs with their symbolic batch,
// opsets, metadata — is what the source held, so a dynamic batch stays
// dynamic and the file loads wherever the original did. Each replaced
// initializer keeps its form: raw_data, float_data or external data. External
// initializers, replaced or not, are written to one new data file named
// after the output (OUT.data), streamed, so a model beyond protobuf's 2 GB
// is written as a small model file and its data; the data files of other
// external tensors are copied beside the output, so its folder is
// self-contained. Unmerged instead adds each LoRA as nodes after its MatMul
// or Gemm, and WriteAdapter writes one defense's LoRA in PEFT's layout.
//
// Every write is staged in a temporary folder inside the output's folder,
// synced, re-imported and run: its logits must match a reference model in
// memory at batch 1 and 3 (within 1e-4) before the files are renamed into
// place. A failed check leaves nothing behind, and no write ever replaces
// the source model, its data files, or a path the caller protects.
//
// The package writes from the inputs it is given (a source model, its folder,
// new weights, LoRAs, the files to protect); it knows nothing of a hyperat
// workspace. The hyperat-export command (internal/app) reads and checks a
// workspace's tuning result and calls it.
package export
