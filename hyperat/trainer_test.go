package hyperat

import (
	"maps"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/testutil"
)

// synth is a fixed random dataset of 1x28x28 images whose label depends on
// the image (the mean brightness of a quadrant), so there is signal to learn.
type synth struct {
	x []*graph.Tensor
	y []int
}

func newSynth(n int, seed uint64) *synth {
	r := rand.New(rand.NewPCG(seed, 5))
	s := &synth{}
	for i := 0; i < n; i++ {
		t := graph.NewTensor(graph.Float32, []int{1, 28, 28})
		lab := r.IntN(10)
		for j := range t.F {
			t.F[j] = float32(r.Float64()) * 0.5
			if (j/28)/7 == lab%4 {
				t.F[j] += 0.4
			}
		}
		s.x = append(s.x, t)
		s.y = append(s.y, lab)
	}
	return s
}

func (s *synth) Batch(idx []int) (*graph.Tensor, []int, error) {
	x := graph.NewTensor(graph.Float32, []int{len(idx), 1, 28, 28})
	y := make([]int, len(idx))
	for i, k := range idx {
		copy(x.F[i*784:], s.x[k].F)
		y[i] = s.y[k]
	}
	return x, y, nil
}

func smallConfig(method string) Config {
	c := DefaultConfig()
	c.Method, c.Iters, c.Batch, c.Steps, c.Rank, c.Alpha, c.Eps = method, 4, 8, 2, 2, 4, 0.1
	c.EmbedDim, c.Hidden, c.Seed = 8, 16, 7
	if method != "hyperat" {
		c.Defenses = []string{"trades"}
	}
	return c
}

func loadHF(t *testing.T) *onnximport.Model {
	m, err := onnximport.Load(testutil.Fixture("models", "hf_vit_op16.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func indices(n int) []int {
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	return idx
}

// Two runs with the same seed end with bit-identical parameters.
func TestTrainerDeterministic(t *testing.T) {
	data := newSynth(32, 1)
	var ref []*graph.Tensor
	for run := 0; run < 2; run++ {
		tr, err := NewTrainer(loadHF(t), smallConfig("hyperat"), data, indices(32))
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 3; i++ {
			if _, err := tr.Step(); err != nil {
				t.Fatal(err)
			}
		}
		if run == 0 {
			ref = tr.Params
			continue
		}
		for i, p := range tr.Params {
			for j := range p.F {
				if p.F[j] != ref[i].F[j] {
					t.Fatalf("%s[%d] differs between runs", tr.Names[i], j)
				}
			}
		}
	}
}

// The merged model (W0 + s B A written into the weights) computes what the
// LoRA-adapted net computes; before training it is the pretrained model.
func TestMergedModelEqualsAdaptedNet(t *testing.T) {
	data := newSynth(16, 2)
	for _, method := range []string{"lora", "hyperat", "full"} {
		m := loadHF(t)
		tr, err := NewTrainer(m, smallConfig(method), data, indices(16))
		if err != nil {
			t.Fatal(err)
		}
		x, _, _ := data.Batch(indices(4))
		merged, err := tr.MergedModel(Uniform(len(tr.defs)))
		if err != nil {
			t.Fatal(err)
		}
		orig, err := WithWeights(m, tr.orig, nil)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := merged.Logits(x)
		b, _ := orig.Logits(x)
		if d := testutil.MaxAbsDiff(a.F, b.F); d != 0 {
			t.Fatalf("%s: untrained merged model differs from the pretrained one by %g", method, d)
		}
		for i := 0; i < 3; i++ {
			if _, err := tr.Step(); err != nil {
				t.Fatal(err)
			}
		}
		merged, err = tr.MergedModel([]float64{1})
		if err != nil {
			t.Fatal(err)
		}
		adapted, err := tr.ForDefense(0)
		if err != nil {
			t.Fatal(err)
		}
		a, _ = merged.Logits(x)
		c, _ := adapted.Logits(x)
		if d := testutil.MaxAbsDiff(a.F, c.F); d > 1e-4 {
			t.Fatalf("%s: merged logits differ from the adapted net's by %g", method, d)
		}
		if d := testutil.MaxAbsDiff(a.F, b.F); d == 0 {
			t.Fatalf("%s: training did not change the model", method)
		}
	}
}

// A run interrupted after two iterations, its snapshot restored into a new
// trainer, ends with the same weights as an uninterrupted run (both in
// micro-batches).
func TestResumeEqualsUninterrupted(t *testing.T) {
	data := newSynth(32, 3)
	cfg := smallConfig("hyperat")
	cfg.Iters = 4
	cfg.Micro = 3 // micro-batches of 3, 3 and 2: the checkpoint keeps the split
	full, err := NewTrainer(loadHF(t), cfg, data, indices(32))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		if _, err := full.Step(); err != nil {
			t.Fatal(err)
		}
	}
	first, _ := NewTrainer(loadHF(t), cfg, data, indices(32))
	for i := 0; i < 2; i++ {
		if _, err := first.Step(); err != nil {
			t.Fatal(err)
		}
	}
	snap := first.Snapshot()
	second, _ := NewTrainer(loadHF(t), snap.Config, data, indices(32))
	// a snapshot that lacks a tensor or holds one of another size is
	// refused, and nothing changes
	for _, bad := range []func(map[string]*graph.Tensor){
		func(ts map[string]*graph.Tensor) { delete(ts, "adam_v/"+second.Names[len(second.Names)-1]) },
		func(ts map[string]*graph.Tensor) {
			ts["param/"+second.Names[0]] = graph.NewTensor(graph.Float32, []int{1})
		},
	} {
		ts := maps.Clone(snap.Tensors)
		bad(ts)
		if err := second.Restore(Snapshot{Iteration: 2, AdamStep: 2, Tensors: ts}); err == nil || !strings.Contains(err.Error(), "checkpoint") {
			t.Fatalf("a damaged snapshot restored: %v", err)
		}
		if second.It != 0 || second.Opt.Step != 0 || slices.Equal(second.Params[0].F, first.Params[0].F) {
			t.Fatal("a refused snapshot changed the trainer")
		}
	}
	if err := second.Restore(snap); err != nil {
		t.Fatal(err)
	}
	for second.It < 4 {
		if _, err := second.Step(); err != nil {
			t.Fatal(err)
		}
	}
	for i, p := range second.Params {
		for j := range p.F {
			if p.F[j] != full.Params[i].F[j] {
				t.Fatalf("%s[%d]: resumed %g, uninterrupted %g", second.Names[i], j, p.F[j], full.Params[i].F[j])
			}
		}
	}
}

type randSource struct{ c, h, w int }

func (s randSource) Batch(idx []int) (*graph.Tensor, []int, error) {
	r := rand.New(rand.NewPCG(uint64(idx[0]), 9))
	x := graph.NewTensor(graph.Float32, []int{len(idx), s.c, s.h, s.w})
	for i := range x.F {
		x.F[i] = r.Float32()
	}
	y := make([]int, len(idx))
	for i, k := range idx {
		y[i] = k % 10
	}
	return x, y, nil
}

// In the dynamo exports, identical initializers are stored once (the zero
// biases of several layers are one tensor). Full fine-tuning trains each
// node's copy on its own: the shared initializer is addressed per node, and
// the merged model equals the tuned net.
func TestSharedInitializersStayPerNode(t *testing.T) {
	dir := testutil.SharedModels()
	if dir == "" {
		t.Skip("../shared/models not present")
	}
	m, err := onnximport.Load(filepath.Join(dir, "timm_vit_c32_dynamo_op18.onnx"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := smallConfig("full")
	cfg.Defenses = []string{"pgdat"}
	src := randSource{3, 32, 32}
	tr, err := NewTrainer(m, cfg, src, indices(16))
	if err != nil {
		t.Fatal(err)
	}
	shared := 0
	for _, k := range tr.Net.TrainKeys {
		if k.Reader != "" {
			shared++
		}
	}
	if shared == 0 {
		t.Fatalf("no trained weight of %v is a per-node copy; this export shares its zero biases", tr.Net.TrainKeys)
	}
	for i := 0; i < 2; i++ {
		if _, err := tr.Step(); err != nil {
			t.Fatal(err)
		}
	}
	x, _, _ := src.Batch(indices(3))
	merged, err := tr.MergedModel([]float64{1})
	if err != nil {
		t.Fatal(err)
	}
	adapted, _ := tr.ForDefense(0)
	a, _ := merged.Logits(x)
	b, _ := adapted.Logits(x)
	if d := testutil.MaxAbsDiff(a.F, b.F); d > 1e-4 {
		t.Fatalf("merged logits differ from the adapted net's by %g", d)
	}
}

// A non-finite loss stops the run with an error before the update: the
// parameters and the iteration count stay those of the last good step.
func TestNonFiniteLossStopsBeforeTheUpdate(t *testing.T) {
	data := newSynth(16, 3)
	tr, err := NewTrainer(loadHF(t), smallConfig("hyperat"), data, indices(16))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Step(); err != nil {
		t.Fatal(err)
	}
	before := make([]*graph.Tensor, len(tr.Params))
	for i, p := range tr.Params {
		before[i] = p.Clone()
	}
	for _, x := range data.x {
		x.F[100] = float32(math.NaN())
	}
	_, err = tr.Step()
	if err == nil || !strings.Contains(err.Error(), "loss is NaN") {
		t.Fatalf("a NaN input gave %v, want the loss reported as NaN", err)
	}
	if tr.It != 1 {
		t.Fatalf("iteration count %d after the failed step, want 1", tr.It)
	}
	for i, p := range tr.Params {
		if !slices.Equal(p.F, before[i].F) {
			t.Fatalf("%s changed in the failed step", tr.Names[i])
		}
	}
}
