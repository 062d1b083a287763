package app

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hyperat/hyperat/export"
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/hyperat"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/exporttest"
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/layers"
	"github.com/hyperat/hyperat/onnx"
	"github.com/hyperat/hyperat/safetensors"
	"github.com/hyperat/hyperat/workspace"
)

// newTunedWorkspace imports a model into a new workspace and writes a fake
// tuning result into it.
func newTunedWorkspace(t *testing.T, modelPath string) (dir string, tu *exporttest.Tuning, m *onnximport.Model) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "ws")
	ws, m := exporttest.NewWorkspace(t, modelPath, dir)
	return dir, exporttest.FakeTuning(t, dir, ws, m, 7), m
}

func TestExportMerged(t *testing.T) {
	for _, name := range []string{exporttest.TVModel, exporttest.HFModel} {
		t.Run(name, func(t *testing.T) {
			dir, tu, m := newTunedWorkspace(t, exporttest.Fixture(name))
			before := exporttest.Snapshot(t, dir)
			out := filepath.Join(t.TempDir(), "robust.onnx")
			s, err := exportWorkspace(exportRequest{Workspace: dir, Out: out})
			if err != nil {
				t.Fatal(err)
			}
			exporttest.SameFiles(t, before, exporttest.Snapshot(t, dir))
			if s.Mode != "merged" || s.Model.Replaced != len(tu.Weights) || s.Model.MaxDiff != 0 {
				t.Errorf("summary %+v, report %+v", s, s.Model)
			}
			src, _ := exporttest.Decode(t, exporttest.Fixture(name))
			got, _ := exporttest.Decode(t, out)
			exporttest.CompareModels(t, src, got, tu.Weights)
			c := exporttest.LoadClassifier(t, out)
			x := exporttest.Pixels(c, 4, 1)
			want := exporttest.Logits(t, exporttest.Reference(t, m, tu.Weights), x)
			if d := testutil.MaxAbsDiff(exporttest.ORTLogits(t, out, x).F, want.F); d > 1e-4 {
				t.Errorf("onnxruntime on the export differs from the tuned model by %g", d)
			}
		})
	}
}

// The export never writes the input model, the workspace's files, and a
// workspace whose result was made for another model is refused.
func TestExportRefusals(t *testing.T) {
	srcDir := t.TempDir()
	srcPath := filepath.Join(srcDir, "vit.onnx")
	_, data := exporttest.Decode(t, exporttest.Fixture(exporttest.TVModel))
	exporttest.WriteFile(t, srcPath, data)
	dir := filepath.Join(srcDir, "ws")
	ws, m := exporttest.NewWorkspace(t, srcPath, dir)
	exporttest.FakeTuning(t, dir, ws, m, 8)
	before := exporttest.Snapshot(t, srcDir)
	for _, c := range []struct{ out, want string }{
		{srcPath, "the source model"},
		{workspace.ModelPath(dir), "the workspace's copy"},
		{filepath.Join(dir, workspace.ManifestFile), "workspace"},
		{filepath.Join(workspace.TunedDir(dir), workspace.WeightsFile), "tuning result"},
	} {
		_, err := exportWorkspace(exportRequest{Workspace: dir, Out: c.out})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("%s: %v", c.out, err)
		}
	}
	exporttest.SameFiles(t, before, exporttest.Snapshot(t, srcDir))

	// a tuning result of another model
	var res map[string]any
	rp := filepath.Join(workspace.TunedDir(dir), workspace.ResultFile)
	b, _ := os.ReadFile(rp)
	json.Unmarshal(b, &res)
	res["model_sha256"] = strings.Repeat("ab", 32)
	b, _ = json.Marshal(res)
	exporttest.WriteFile(t, rp, b)
	_, err := exportWorkspace(exportRequest{Workspace: dir, Out: filepath.Join(srcDir, "robust.onnx")})
	if err == nil || !strings.Contains(err.Error(), "another model") {
		t.Errorf("a result of another model: %v", err)
	}
	// a changed model copy
	exporttest.WriteFile(t, workspace.ModelPath(dir), append(data[:len(data):len(data)], 0))
	_, err = exportWorkspace(exportRequest{Workspace: dir, Out: filepath.Join(srcDir, "robust.onnx")})
	if err == nil || !strings.Contains(err.Error(), "changed") {
		t.Errorf("a changed model copy: %v", err)
	}
	// no workspace, no tuning
	_, err = exportWorkspace(exportRequest{Workspace: filepath.Join(srcDir, "nope"), Out: filepath.Join(srcDir, "robust.onnx")})
	if err == nil || !strings.Contains(err.Error(), "hyperat-import") {
		t.Errorf("no workspace: %v", err)
	}
	dir2 := filepath.Join(t.TempDir(), "ws")
	exporttest.NewWorkspace(t, srcPath, dir2)
	_, err = exportWorkspace(exportRequest{Workspace: dir2, Out: filepath.Join(srcDir, "robust.onnx")})
	if err == nil || !strings.Contains(err.Error(), "hyperat-tune") {
		t.Errorf("no tuning: %v", err)
	}
	if _, err := os.Stat(filepath.Join(srcDir, "robust.onnx")); err == nil {
		t.Errorf("a refused export wrote a model")
	}
}

// The adapters have PEFT's keys and config, and their products reproduce the
// tuned weights: W0 + sum over defenses of lambda·(alpha/r)·B·A.
func TestExportAdapters(t *testing.T) {
	for _, name := range []string{exporttest.TVModel, exporttest.HFModel} {
		t.Run(name, func(t *testing.T) {
			dir, tu, m := newTunedWorkspace(t, exporttest.Fixture(name))
			ad := filepath.Join(t.TempDir(), "adapters")
			s, err := exportWorkspace(exportRequest{Workspace: dir, Out: filepath.Join(t.TempDir(), "robust.onnx"), Adapters: ad})
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Adapters) != 2*3+1 {
				t.Errorf("adapter files %v", s.Adapters)
			}
			cfg := tu.Res.Config
			merged := map[layers.WeightKey]*graph.Tensor{}
			for di, d := range cfg.Defenses {
				ts, _, err := safetensors.ReadFile(filepath.Join(ad, d, export.AdapterWeightsFile))
				if err != nil {
					t.Fatal(err)
				}
				var want []string
				for _, tg := range tu.Res.Targets {
					want = append(want, "base_model.model."+tg.Name+".lora_A.weight", "base_model.model."+tg.Name+".lora_B.weight")
				}
				var keys []string
				for k := range ts {
					keys = append(keys, k)
				}
				slices.Sort(keys)
				slices.Sort(want)
				if !slices.Equal(keys, want) {
					t.Fatalf("%s: keys %v, want %v", d, keys, want)
				}
				for _, tg := range tu.Res.Targets {
					a, b := ts["base_model.model."+tg.Name+".lora_A.weight"], ts["base_model.model."+tg.Name+".lora_B.weight"]
					if !slices.Equal(a.Shape, []int{cfg.Rank, tg.In}) || !slices.Equal(b.Shape, []int{tg.Out, cfg.Rank}) {
						t.Fatalf("%s %s: A %v, B %v", d, tg.Name, a.Shape, b.Shape)
					}
					w := merged[tg.Key]
					if w == nil {
						w = m.Graph.ParamByName(tg.Key.Init).Const.Clone()
						merged[tg.Key] = w
					}
					exporttest.AddDelta(w, tg, a, b, float32(tu.Res.Lambda[di])*float32(cfg.Alpha)/float32(cfg.Rank))
				}
				var conf map[string]any
				b, err := os.ReadFile(filepath.Join(ad, d, export.AdapterConfigFile))
				if err != nil {
					t.Fatal(err)
				}
				if err := json.Unmarshal(b, &conf); err != nil {
					t.Fatal(err)
				}
				var lasts []any
				for _, tg := range tu.Res.Targets {
					last := tg.Name[strings.LastIndex(tg.Name, ".")+1:]
					if !slices.Contains(lasts, any(last)) {
						lasts = append(lasts, last)
					}
				}
				for k, v := range map[string]any{"peft_type": "LORA", "r": float64(cfg.Rank), "lora_alpha": cfg.Alpha,
					"lora_dropout": 0.0, "bias": "none", "fan_in_fan_out": false, "task_type": nil,
					"base_model_name_or_path": name} {
					if got, ok := conf[k]; !ok || got != v {
						t.Errorf("%s: %s is %v, want %v", d, k, got, v)
					}
				}
				if tm, _ := conf["target_modules"].([]any); !slices.Equal(tm, lasts) {
					t.Errorf("%s: target_modules %v, want %v", d, conf["target_modules"], lasts)
				}
			}
			for wn, w := range merged {
				if d := testutil.MaxAbsDiff(w.F, tu.Weights[wn].F); d > 1e-5 {
					t.Errorf("%s: the adapters' merge differs from the tuned weights by %g", wn, d)
				}
			}
			head, _, err := safetensors.ReadFile(filepath.Join(ad, headFile))
			if err != nil {
				t.Fatal(err)
			}
			hw, hb := head[tu.Head.Name+".weight"], head[tu.Head.Name+".bias"]
			if hw == nil || hb == nil || len(head) != 2 || !slices.Equal(hw.Shape, []int{tu.Head.Out, tu.Head.In}) ||
				testutil.MaxAbsDiff(hw.F, tu.Weights[tu.Head.Key].F) != 0 ||
				testutil.MaxAbsDiff(hb.F, tu.Weights[layers.WeightKey{Init: tu.Head.Bias.Name}].F) != 0 {
				t.Errorf("head file %v", head)
			}
		})
	}
}

// An unmerged export with the merge weights computes the merged model; with
// one defense, the source with that defense's LoRA merged. Its original
// nodes are unchanged but for the renamed outputs of the adapted MatMuls and
// Gemms; every name is unique, the order topological; onnxruntime agrees.
func TestExportUnmerged(t *testing.T) {
	for _, name := range []string{exporttest.TVModel, exporttest.HFModel} {
		t.Run(name, func(t *testing.T) {
			dir, tu, m := newTunedWorkspace(t, exporttest.Fixture(name))
			src, _ := exporttest.Decode(t, exporttest.Fixture(name))
			tuned := exporttest.Reference(t, m, tu.Weights)
			for _, defense := range []string{"", "trades"} {
				out := filepath.Join(t.TempDir(), "lora.onnx")
				s, err := exportWorkspace(exportRequest{Workspace: dir, Out: out, Unmerged: true, Defense: defense})
				if err != nil {
					t.Fatal(err)
				}
				want := tuned
				nBranches := 3
				if defense != "" {
					nBranches = 1
					hb := layers.WeightKey{Init: tu.Head.Bias.Name}
					w := map[layers.WeightKey]*graph.Tensor{tu.Head.Key: tu.Weights[tu.Head.Key], hb: tu.Weights[hb]}
					for _, tg := range tu.Res.Targets {
						wt := w[tg.Key]
						if wt == nil {
							wt = m.Graph.ParamByName(tg.Key.Init).Const.Clone()
							w[tg.Key] = wt
						}
						exporttest.AddDelta(wt, tg, tu.LoRA[defense+"/"+tg.Name+".lora_A.weight"], tu.LoRA[defense+"/"+tg.Name+".lora_B.weight"], float32(tu.Res.Scale))
					}
					want = exporttest.Reference(t, m, w)
				}
				if s.Model.Replaced != 2 || s.Model.AddedInits != 3*len(tu.Res.Targets) || s.Model.MaxDiff > 1e-4 {
					t.Errorf("%q: report %+v", defense, s.Model)
				}
				got, _ := exporttest.Decode(t, out)
				checkUnmergedGraph(t, src, got, tu, nBranches, defense)
				c := exporttest.LoadClassifier(t, out)
				for _, b := range []int{1, 3} {
					x := exporttest.Pixels(c, b, uint64(10+b))
					ours := exporttest.Logits(t, c, x)
					if d := testutil.MaxAbsDiff(ours.F, exporttest.Logits(t, want, x).F); d > 1e-4 {
						t.Errorf("%q batch %d: the unmerged model differs from the merged one by %g", defense, b, d)
					}
					if d := testutil.MaxAbsDiff(exporttest.ORTLogits(t, out, x).F, ours.F); d > 1e-4 {
						t.Errorf("%q batch %d: onnxruntime differs from us by %g", defense, b, d)
					}
				}
			}
		})
	}
}

func checkUnmergedGraph(t *testing.T, src, got *onnx.ModelProto, tu *exporttest.Tuning, ranks int, defense string) {
	t.Helper()
	// the original nodes, in order, unchanged but for the adapted nodes' outputs
	adapted := map[string]bool{}
	weights := map[string]bool{}
	for _, tg := range tu.Res.Targets {
		weights[tg.Key.Init] = true
	}
	j := 0
	for _, n := range src.Graph.Node {
		for j < len(got.Graph.Node) && got.Graph.Node[j].GetName() != n.GetName() {
			j++
		}
		if j == len(got.Graph.Node) {
			t.Fatalf("node %s is missing or out of order", n.GetName())
		}
		g := got.Graph.Node[j]
		if !bytes.Equal(exporttest.Encode(t, n), exporttest.Encode(t, g)) {
			if g.Output[0] == n.Output[0] || !slices.Equal(g.Output[1:], n.Output[1:]) || !slices.Equal(g.Input, n.Input) ||
				n.GetOpType() != "MatMul" && n.GetOpType() != "Gemm" {
				t.Errorf("node %s changed beyond its output's name", n.GetName())
			}
			adapted[n.GetName()] = true
		}
	}
	if len(adapted) != len(tu.Res.Targets) {
		t.Errorf("%d nodes adapted, want %d", len(adapted), len(tu.Res.Targets))
	}
	// unique names, topological order
	defined := map[string]bool{"": true}
	for _, vi := range got.Graph.Input {
		defined[vi.GetName()] = true
	}
	for _, tp := range got.Graph.Initializer {
		if defined[tp.GetName()] {
			t.Errorf("initializer %s defined twice", tp.GetName())
		}
		defined[tp.GetName()] = true
	}
	nodeNames := map[string]bool{}
	for _, n := range got.Graph.Node {
		if nodeNames[n.GetName()] {
			t.Errorf("node name %s used twice", n.GetName())
		}
		nodeNames[n.GetName()] = true
		for _, in := range n.Input {
			if !defined[in] {
				t.Fatalf("node %s reads %s before it is defined", n.GetName(), in)
			}
		}
		for _, o := range n.Output {
			if defined[o] {
				t.Errorf("value %s defined twice", o)
			}
			defined[o] = true
		}
	}
	// the LoRA initializers: PEFT's names, the concatenated rank
	inits := map[string]*onnx.TensorProto{}
	for _, tp := range got.Graph.Initializer {
		inits[tp.GetName()] = tp
	}
	r := tu.Res.Config.Rank * ranks
	for _, tg := range tu.Res.Targets {
		a, b := inits[tg.Name+".lora_A.weight"], inits[tg.Name+".lora_B.weight"]
		if a == nil || b == nil || !slices.Equal(a.Dims, []int64{int64(r), int64(tg.In)}) || !slices.Equal(b.Dims, []int64{int64(tg.Out), int64(r)}) {
			t.Fatalf("%s: LoRA initializers %v %v", tg.Name, a.GetDims(), b.GetDims())
		}
		if defense != "" && testutil.MaxAbsDiff(exporttest.Floats(a.RawData), tu.LoRA[defense+"/"+tg.Name+".lora_A.weight"].F) != 0 {
			t.Errorf("%s: A is not the defense's", tg.Name)
		}
	}
}

// Two layers on one initializer: the unmerged export adds both LoRAs at both
// readers, as the merged weight holds both deltas.
func TestExportUnmergedShared(t *testing.T) {
	srcDir := t.TempDir()
	path, _ := exporttest.SharedModel(t, srcDir)
	dir := filepath.Join(srcDir, "ws")
	ws, m := exporttest.NewWorkspace(t, path, dir)
	tu := exporttest.FakeTuning(t, dir, ws, m, 9)
	out := filepath.Join(t.TempDir(), "lora.onnx")
	s, err := exportWorkspace(exportRequest{Workspace: dir, Out: out, Unmerged: true})
	if err != nil {
		t.Fatal(err)
	}
	if s.Model.AddedInits != 3*(len(tu.Res.Targets)-1) {
		t.Errorf("%d initializers added for %d layers on %d weights", s.Model.AddedInits, len(tu.Res.Targets), len(tu.Res.Targets)-1)
	}
	c := exporttest.LoadClassifier(t, out)
	x := exporttest.Pixels(c, 3, 3)
	want := exporttest.Logits(t, exporttest.Reference(t, m, tu.Weights), x)
	if d := testutil.MaxAbsDiff(exporttest.Logits(t, c, x).F, want.F); d > 1e-4 {
		t.Errorf("the unmerged model differs from the merged one by %g", d)
	}
	if d := testutil.MaxAbsDiff(exporttest.ORTLogits(t, out, x).F, want.F); d > 1e-4 {
		t.Errorf("onnxruntime differs from the merged model by %g", d)
	}
}

// A real (tiny) tuning run's result exports: merged, unmerged, adapters.
func TestExportTrainerResult(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ws")
	ws, m := exporttest.NewWorkspace(t, exporttest.Fixture(exporttest.HFModel), dir)
	cfg := hyperat.DefaultConfig()
	cfg.Iters, cfg.Batch, cfg.Steps, cfg.Rank, cfg.Alpha, cfg.EmbedDim, cfg.Hidden, cfg.Seed = 2, 4, 1, 2, 4, 8, 16, 3
	data := synth{}
	tm, err := onnximport.Load(workspace.ModelPath(dir))
	if err != nil {
		t.Fatal(err)
	}
	tr, err := hyperat.NewTrainer(tm, cfg, data, []int{0, 1, 2, 3, 4, 5, 6, 7})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < cfg.Iters; i++ {
		if _, err := tr.Step(); err != nil {
			t.Fatal(err)
		}
	}
	res, err := tr.Tuned(hyperat.Result{ModelSHA256: ws.Source.SHA256, Lambda: []float64{0.2, 0.3, 0.5}})
	if err != nil {
		t.Fatal(err)
	}
	if err := workspace.WriteResult(dir, res); err != nil {
		t.Fatal(err)
	}
	_, weights, err := workspace.ReadResult(dir)
	if err != nil {
		t.Fatal(err)
	}
	tuned := exporttest.Reference(t, m, weights)
	outDir := t.TempDir()
	for _, r := range []exportRequest{
		{Out: filepath.Join(outDir, "robust.onnx"), Adapters: filepath.Join(outDir, "adapters")},
		{Out: filepath.Join(outDir, "lora.onnx"), Unmerged: true},
	} {
		r.Workspace = dir
		s, err := exportWorkspace(r)
		if err != nil {
			t.Fatal(err)
		}
		c := exporttest.LoadClassifier(t, r.Out)
		x := exporttest.Pixels(c, 2, 4)
		if d := testutil.MaxAbsDiff(exporttest.Logits(t, c, x).F, exporttest.Logits(t, tuned, x).F); d > 1e-4 {
			t.Errorf("%s differs from the tuned model by %g", r.Out, d)
		}
		if r.Adapters != "" && len(s.Adapters) != 7 {
			t.Errorf("adapters %v", s.Adapters)
		}
	}
}

// synth yields random images and labels for the hf fixture (1x28x28, 10 classes).
type synth struct{}

func (synth) Batch(idx []int) (*graph.Tensor, []int, error) {
	x := graph.NewTensor(graph.Float32, []int{len(idx), 1, 28, 28})
	y := make([]int, len(idx))
	for i, k := range idx {
		r := rand.New(rand.NewPCG(uint64(k), 5))
		for j := 0; j < 784; j++ {
			x.F[i*784+j] = r.Float32()
		}
		y[i] = k % 10
	}
	return x, y, nil
}
