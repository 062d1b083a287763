package compile_test

import (
	"path/filepath"
	"testing"

	"github.com/hyperat/hyperat/compile"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/testutil"
)

// The shared timm exports (dynamo, opsets 18 and 20) must reproduce PyTorch's
// logits within 1e-4.
func TestSharedModelsForward(t *testing.T) {
	dir := testutil.SharedModels()
	if dir == "" {
		t.Skip("../shared/models not present")
	}
	input, want := testutil.LoadSharedGolden(t, dir)
	for _, f := range []string{"timm_vit_c32_dynamo_op18.onnx", "timm_vit_c32_dynamo_op20.onnx"} {
		t.Run(f, func(t *testing.T) {
			m, err := onnximport.Load(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			p, err := compile.Compile(m.Graph, compile.Options{Batch: input.Shape[0], Verify: true})
			if err != nil {
				t.Fatal(err)
			}
			out, err := p.Run(input)
			if err != nil {
				t.Fatal(err)
			}
			d := testutil.MaxAbsDiff(out[0].F, want.F)
			t.Logf("max abs diff %.3g", d)
			if d > 1e-4 {
				t.Fatalf("logits differ from PyTorch by %g (> 1e-4)", d)
			}
		})
	}
}
