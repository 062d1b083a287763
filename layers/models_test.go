package layers_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/layers"
)

// layer is the expected form of one recognized linear layer.
type layer struct {
	name, kind string
	block      int
	in, out    int
	transposed bool
	structural bool
}

func (l layer) String() string {
	s := fmt.Sprintf("%s %s block %d %dx%d", l.name, l.kind, l.block, l.in, l.out)
	if l.transposed {
		s += " transposed"
	}
	if l.structural {
		s += " structural"
	}
	return s
}

// family is what a family of exports (one architecture, several opsets) must give.
type family struct {
	input      string // the input's shape as printed
	blocks     []string
	structural bool // block names made from the structure
	layers     []layer
	convs      []string // as conv.String prints them
}

// conv is the expected form of one convolution, as String prints it.
func conv(name string, in, out, k, s, groups int) string {
	return fmt.Sprintf("%s (conv, %d->%d, kernel [%d %d], stride [%d %d], groups %d)", name, in, out, k, k, s, s, groups)
}

// mbconv lists the convolutions of one torchvision MaxViT MBConv of width
// d (expansion 4, squeeze to a quarter of the input width, stride 2).
func mbconv(p string, in, d int) []string {
	h := 4 * d
	return []string{
		conv(p+".proj.1", in, d, 1, 1, 1),
		conv(p+".layers.conv_a.0", in, h, 1, 1, 1),
		conv(p+".layers.conv_b.0", h, h, 3, 2, h),
		conv(p+".layers.squeeze_excitation.fc1", h, d/4, 1, 1, 1),
		conv(p+".layers.squeeze_excitation.fc2", d/4, h, 1, 1, 1),
		conv(p+".layers.conv_c", h, d, 1, 1, 1),
	}
}

// timmLike lists a timm-layout model's layers: packed qkv, proj, fc1, fc2 per block.
func timmLike(prefix string, depth, dim, hidden, classes int, structural bool) []layer {
	var ls []layer
	for b := 0; b < depth; b++ {
		p := fmt.Sprintf("%s%d", prefix, b)
		ls = append(ls,
			layer{p + ".attn.qkv", "qkv", b, dim, 3 * dim, false, structural},
			layer{p + ".attn.proj", "proj", b, dim, dim, false, structural},
			layer{p + ".mlp.fc1", "fc1", b, dim, hidden, false, structural},
			layer{p + ".mlp.fc2", "fc2", b, hidden, dim, false, structural})
	}
	return append(ls, layer{"head", "head", -1, dim, classes, true, false})
}

// swinLike lists torchvision Swin's layers: per stage its blocks (qkv, proj,
// mlp.0, mlp.3), then the patch merging (features.N.reduction) before the next.
func swinLike(depths []int, dim, classes int) []layer {
	var ls []layer
	b := 0
	for s, d := range depths {
		for k := 0; k < d; k++ {
			p := fmt.Sprintf("features.%d.%d", 2*s+1, k)
			ls = append(ls,
				layer{p + ".attn.qkv", "qkv", b, dim, 3 * dim, false, false},
				layer{p + ".attn.proj", "proj", b, dim, dim, false, false},
				layer{p + ".mlp.0", "fc1", b, dim, 4 * dim, false, false},
				layer{p + ".mlp.3", "fc2", b, 4 * dim, dim, false, false})
			b++
		}
		if s+1 < len(depths) {
			ls = append(ls, layer{fmt.Sprintf("features.%d.reduction", 2*s+2), "linear", -1, 4 * dim, 2 * dim, false, false})
			dim *= 2
		}
	}
	return append(ls, layer{"head", "head", -1, dim, classes, true, false})
}

// swinV2Like is swinLike for Swin V2: its attention applies the qkv weight
// with F.linear on a key-masked bias, so the qkv product carries the
// attention's scope and no name of its own (the weight is stored transposed,
// the bias folded): the scope names it. The position-bias MLP multiplies
// parameters alone and is no layer.
func swinV2Like(depths []int, dim, classes int) []layer {
	ls := swinLike(depths, dim, classes)
	for i := range ls {
		if ls[i].kind == "qkv" {
			ls[i].name = strings.TrimSuffix(ls[i].name, ".qkv")
		}
	}
	return ls
}

func blockNames(format string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(format, i)
	}
	return out
}

var families = map[string]family{
	// timm layout, TorchScript exporter: names from the node scopes (the MatMul
	// weights are pre-transposed initializers named onnx::MatMul_N).
	"mnist_vit": {
		input:  "[batch,1,28,28]",
		blocks: blockNames("blocks.%d", 6),
		layers: timmLike("blocks.", 6, 128, 512, 10, false),
		convs:  []string{conv("patch_embed.proj", 1, 128, 4, 4, 1)},
	},
	// torchvision: nn.MultiheadAttention's packed in_proj (MatMul + Add of
	// in_proj_bias) and out_proj as a Gemm with transB=1; the MLP is a Sequential.
	"tv_vit": {
		input:  "[batch,3,32,32]",
		blocks: blockNames("encoder.layers.encoder_layer_%d", 2),
		layers: func() []layer {
			var ls []layer
			for b := 0; b < 2; b++ {
				p := fmt.Sprintf("encoder.layers.encoder_layer_%d", b)
				ls = append(ls,
					layer{p + ".self_attention.in_proj", "qkv", b, 64, 192, false, false},
					layer{p + ".self_attention.out_proj", "proj", b, 64, 64, true, false},
					layer{p + ".mlp.0", "fc1", b, 64, 128, false, false},
					layer{p + ".mlp.3", "fc2", b, 128, 64, false, false})
			}
			return append(ls, layer{"heads.head", "head", -1, 64, 10, true, false})
		}(),
		convs: []string{conv("conv_proj", 3, 64, 4, 4, 1)},
	},
	// torchvision Swin: window attention with a relative position bias (and,
	// in shifted blocks, a mask) added to the scores; patch merging between
	// stages is a linear outside the blocks, listed but not tuned.
	"tv_swin_t": {
		input:  "[batch,3,32,32]",
		blocks: []string{"features.1.0", "features.1.1", "features.3.0", "features.3.1"},
		layers: swinLike([]int{2, 2}, 16, 10),
		convs:  []string{conv("features.0.0", 3, 16, 4, 4, 1)},
	},
	"tv_swin_s": {
		input:  "[batch,3,48,48]",
		blocks: []string{"features.1.0", "features.1.1", "features.3.0", "features.3.1", "features.5.0", "features.5.1"},
		layers: swinLike([]int{2, 2, 2}, 16, 10),
		convs:  []string{conv("features.0.0", 3, 16, 4, 4, 1)},
	},
	// Swin V2 in torchvision's layout (fixtures/gen/swinv2.py): cosine attention
	// and a continuous position bias computed in the graph.
	"tv_swin_v2_t": {
		input:  "[batch,3,32,32]",
		blocks: []string{"features.1.0", "features.1.1", "features.3.0", "features.3.1"},
		layers: swinV2Like([]int{2, 2}, 16, 10),
		convs:  []string{conv("features.0.0", 3, 16, 4, 4, 1)},
	},
	// torchvision MaxViT: block (window) and grid attention per layer, each
	// with its MLP; the MBConv convolutions are not linears; the classifier's
	// pre-logits layer stays outside the blocks.
	"tv_maxvit_t": {
		input: "[batch,3,32,32]",
		blocks: []string{"blocks.0.layers.0.layers.window_attention", "blocks.0.layers.0.layers.grid_attention",
			"blocks.1.layers.0.layers.window_attention", "blocks.1.layers.0.layers.grid_attention"},
		layers: func() []layer {
			var ls []layer
			b := 0
			for s, dim := range []int{16, 32} {
				for _, kind := range []string{"window_attention", "grid_attention"} {
					p := fmt.Sprintf("blocks.%d.layers.0.layers.%s", s, kind)
					ls = append(ls,
						layer{p + ".attn_layer.1.to_qkv", "qkv", b, dim, 3 * dim, false, false},
						layer{p + ".attn_layer.1.merge", "proj", b, dim, dim, false, false},
						layer{p + ".mlp_layer.1", "fc1", b, dim, 4 * dim, false, false},
						layer{p + ".mlp_layer.3", "fc2", b, 4 * dim, dim, false, false})
					b++
				}
			}
			return append(ls, layer{"classifier.3", "linear", -1, 32, 32, true, false},
				layer{"classifier.5", "head", -1, 32, 10, false, false})
		}(),
		// the stem, then one MBConv per stage before its attention
		convs: append(append([]string{conv("stem.0.0", 3, 16, 3, 2, 1), conv("stem.1.0", 16, 16, 3, 1, 1)},
			mbconv("blocks.0.layers.0.layers.MBconv", 16, 16)...),
			mbconv("blocks.1.layers.0.layers.MBconv", 16, 32)...),
	},
	// Hugging Face: separate query, key, value.
	"hf_vit": {
		input:  "[batch,1,28,28]",
		blocks: blockNames("vit.encoder.layer.%d", 2),
		layers: func() []layer {
			var ls []layer
			for b := 0; b < 2; b++ {
				p := fmt.Sprintf("vit.encoder.layer.%d", b)
				ls = append(ls,
					layer{p + ".attention.attention.query", "q", b, 64, 64, false, false},
					layer{p + ".attention.attention.key", "k", b, 64, 64, false, false},
					layer{p + ".attention.attention.value", "v", b, 64, 64, false, false},
					layer{p + ".attention.output.dense", "proj", b, 64, 64, false, false},
					layer{p + ".intermediate.dense", "fc1", b, 64, 128, false, false},
					layer{p + ".output.dense", "fc2", b, 128, 64, false, false})
			}
			return append(ls, layer{"classifier", "head", -1, 64, 10, true, false})
		}(),
		convs: []string{conv("vit.embeddings.patch_embeddings.projection", 1, 64, 4, 4, 1)},
	},
	// timm, dynamo exporter with random weights: weights are anonymous
	// (val_N), node names carry no scope, and identical initializers (the zero
	// biases, the LayerNorm weights) are shared by all blocks, so only the head
	// keeps its name.
	"timm_vit_c32_dynamo": {
		input:      "[batch,3,32,32]",
		blocks:     blockNames("blocks.%d", 4),
		structural: true,
		layers:     timmLike("blocks.", 4, 96, 384, 10, true),
		convs:      []string{conv("patch_embed.proj", 3, 96, 4, 4, 1)},
	},
}

// familyOf maps "tv_vit_op14.onnx" to "tv_vit".
func familyOf(file string) string {
	base := strings.TrimSuffix(filepath.Base(file), ".onnx")
	if i := strings.LastIndex(base, "_op"); i > 0 {
		return base[:i]
	}
	return base
}

// modelFiles lists the fixture models and, when present, the shared ones.
func modelFiles(t *testing.T) []string {
	files, err := filepath.Glob(testutil.Fixture("models", "*.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	if dir := testutil.SharedModels(); dir != "" {
		shared, _ := filepath.Glob(filepath.Join(dir, "*.onnx"))
		files = append(files, shared...)
	}
	if len(files) == 0 {
		t.Skip("no fixture models yet (fixtures/models/*.onnx)")
	}
	return files
}

// Every fixture and shared model gives exactly the expected blocks and layers.
func TestRecognizeModels(t *testing.T) {
	for _, f := range modelFiles(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			want, ok := families[familyOf(f)]
			if !ok {
				t.Fatalf("no expected layers for model family %q: add it to families", familyOf(f))
			}
			m, err := onnximport.Load(f)
			if err != nil {
				t.Fatal(err)
			}
			r, err := layers.Recognize(m.Graph)
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Input.Shape.String(); got != want.input {
				t.Errorf("input shape %s, want %s", got, want.input)
			}
			if r.Params != m.Graph.NumParams() || r.Params == 0 {
				t.Errorf("params %d, graph has %d", r.Params, m.Graph.NumParams())
			}
			var gotBlocks []string
			for i, b := range r.Blocks {
				gotBlocks = append(gotBlocks, b.Name)
				if b.Index != i || b.Structural != want.structural {
					t.Errorf("block %d: index %d structural %v, want structural %v", i, b.Index, b.Structural, want.structural)
				}
				if b.QK == nil || b.AV == nil || b.Softmax == nil {
					t.Errorf("block %d: attention nodes missing", i)
				}
			}
			if strings.Join(gotBlocks, " ") != strings.Join(want.blocks, " ") {
				t.Errorf("blocks\n got %v\nwant %v", gotBlocks, want.blocks)
			}
			var got []string
			for _, l := range r.Linears {
				got = append(got, layer{l.Name, l.Kind, l.Block, l.In, l.Out, l.Transposed, l.Structural}.String())
				checkLinear(t, l)
			}
			var exp []string
			for _, l := range want.layers {
				exp = append(exp, l.String())
			}
			if strings.Join(got, "\n") != strings.Join(exp, "\n") {
				t.Errorf("layers\n got:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(exp, "\n  "))
			}
			var convs []string
			for _, c := range r.Convs {
				convs = append(convs, c.String())
				if c.Node.Op != "Conv" || c.Node.In(1) != c.Weight || c.Structural {
					t.Errorf("%s: node %s reading %s, structural %v", c.Name, c.Node.Op, c.Node.In(1).Name, c.Structural)
				}
			}
			if strings.Join(convs, "\n") != strings.Join(want.convs, "\n") {
				t.Errorf("convolutions\n got:\n  %s\nwant:\n  %s", strings.Join(convs, "\n  "), strings.Join(want.convs, "\n  "))
			}
			if r.Head == nil || r.Head.Kind != "head" {
				t.Errorf("head %v", r.Head)
			}
			nTargets := 0
			for _, b := range r.Blocks {
				nTargets += len(b.Linears)
			}
			if len(r.Targets()) != nTargets+1 {
				t.Errorf("%d targets, want the %d block layers and the head", len(r.Targets()), nTargets)
			}
		})
	}
}

// checkLinear checks a layer's wiring: weight shape and layout, bias, input and output.
func checkLinear(t *testing.T, l *layers.Linear) {
	t.Helper()
	ws := l.Weight.Const.Shape
	wantShape := []int{l.In, l.Out}
	if l.Transposed {
		wantShape = []int{l.Out, l.In}
	}
	if !l.Weight.Param || len(ws) != 2 || ws[0] != wantShape[0] || ws[1] != wantShape[1] {
		t.Errorf("%s: weight %s %v, want an initializer of %v", l.Name, l.Weight.Name, ws, wantShape)
	}
	if l.Bias != nil && l.Bias.Const.Numel() != l.Out {
		t.Errorf("%s: bias %v, want %d elements", l.Name, l.Bias.Const.Shape, l.Out)
	}
	if l.Node.In(0) != l.Input || l.Input.IsConst() {
		t.Errorf("%s: input is not the product's activation", l.Name)
	}
	if l.BiasNode != nil && l.Output != l.BiasNode.Outputs[0] || l.BiasNode == nil && l.Output != l.Node.Outputs[0] {
		t.Errorf("%s: output is not the layer's result", l.Name)
	}
}
