package export_test

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
	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/layers"
	"github.com/hyperat/hyperat/onnx"
	"github.com/hyperat/hyperat/safetensors"
	"github.com/hyperat/hyperat/workspace"
)

// tunedWorkspace imports a model into a new workspace and writes a fake
// tuning result into it.
func tunedWorkspace(t *testing.T, modelPath string) (dir string, tu *tuning, m *onnximport.Model) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), "ws")
	ws, m := newWorkspace(t, modelPath, dir)
	return dir, fakeTuning(t, dir, ws, m, 7), m
}

func TestFromWorkspaceMerged(t *testing.T) {
	for _, name := range []string{tvModel, hfModel} {
		t.Run(name, func(t *testing.T) {
			dir, tu, m := tunedWorkspace(t, fixture(name))
			before := snapshot(t, dir)
			out := filepath.Join(t.TempDir(), "robust.onnx")
			s, err := export.FromWorkspace(export.Request{Workspace: dir, Out: out})
			if err != nil {
				t.Fatal(err)
			}
			sameFiles(t, before, snapshot(t, dir))
			if s.Mode != "merged" || s.Model.Replaced != len(tu.weights) || s.Model.MaxDiff != 0 {
				t.Errorf("summary %+v, report %+v", s, s.Model)
			}
			src, _ := decode(t, fixture(name))
			got, _ := decode(t, out)
			compareModels(t, src, got, tu.weights)
			c := loadClassifier(t, out)
			x := pixels(c, 4, 1)
			want := logits(t, reference(t, m, tu.weights), x)
			if d := testutil.MaxAbsDiff(ortLogits(t, out, x).F, want.F); d > 1e-4 {
				t.Errorf("onnxruntime on the export differs from the tuned model by %g", d)
			}
		})
	}
}

// The export never writes the input model, the workspace's files, and a
// workspace whose result was made for another model is refused.
func TestFromWorkspaceRefusals(t *testing.T) {
	srcDir := t.TempDir()
	srcPath := filepath.Join(srcDir, "vit.onnx")
	_, data := decode(t, fixture(tvModel))
	writeFile(t, srcPath, data)
	dir := filepath.Join(srcDir, "ws")
	ws, m := newWorkspace(t, srcPath, dir)
	fakeTuning(t, dir, ws, m, 8)
	before := snapshot(t, srcDir)
	for _, c := range []struct{ out, want string }{
		{srcPath, "the source model"},
		{workspace.ModelPath(dir), "the workspace's copy"},
		{filepath.Join(dir, workspace.ManifestFile), "workspace"},
		{filepath.Join(dir, hyperat.ResultDir, hyperat.WeightsFile), "tuning result"},
	} {
		_, err := export.FromWorkspace(export.Request{Workspace: dir, Out: c.out})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "refusing") {
			t.Errorf("%s: %v", c.out, err)
		}
	}
	sameFiles(t, before, snapshot(t, srcDir))

	// a tuning result of another model
	var res map[string]any
	rp := filepath.Join(dir, hyperat.ResultDir, hyperat.ResultFile)
	b, _ := os.ReadFile(rp)
	json.Unmarshal(b, &res)
	res["model_sha256"] = strings.Repeat("ab", 32)
	b, _ = json.Marshal(res)
	writeFile(t, rp, b)
	_, err := export.FromWorkspace(export.Request{Workspace: dir, Out: filepath.Join(srcDir, "robust.onnx")})
	if err == nil || !strings.Contains(err.Error(), "another model") {
		t.Errorf("a result of another model: %v", err)
	}
	// a changed model copy
	writeFile(t, workspace.ModelPath(dir), append(data[:len(data):len(data)], 0))
	_, err = export.FromWorkspace(export.Request{Workspace: dir, Out: filepath.Join(srcDir, "robust.onnx")})
	if err == nil || !strings.Contains(err.Error(), "changed") {
		t.Errorf("a changed model copy: %v", err)
	}
	// no workspace, no tuning
	_, err = export.FromWorkspace(export.Request{Workspace: filepath.Join(srcDir, "nope"), Out: filepath.Join(srcDir, "robust.onnx")})
	if err == nil || !strings.Contains(err.Error(), "hyperat-import") {
		t.Errorf("no workspace: %v", err)
	}
	dir2 := filepath.Join(t.TempDir(), "ws")
	newWorkspace(t, srcPath, dir2)
	_, err = export.FromWorkspace(export.Request{Workspace: dir2, Out: filepath.Join(srcDir, "robust.onnx")})
	if err == nil || !strings.Contains(err.Error(), "hyperat-tune") {
		t.Errorf("no tuning: %v", err)
	}
	if _, err := os.Stat(filepath.Join(srcDir, "robust.onnx")); err == nil {
		t.Errorf("a refused export wrote a model")
	}
}

// The adapters have PEFT's keys and config, and their products reproduce the
// tuned weights: W0 + sum over defenses of lambda·(alpha/r)·B·A.
func TestAdapters(t *testing.T) {
	for _, name := range []string{tvModel, hfModel} {
		t.Run(name, func(t *testing.T) {
			dir, tu, m := tunedWorkspace(t, fixture(name))
			ad := filepath.Join(t.TempDir(), "adapters")
			s, err := export.FromWorkspace(export.Request{Workspace: dir, Out: filepath.Join(t.TempDir(), "robust.onnx"), Adapters: ad})
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Adapters) != 2*3+1 {
				t.Errorf("adapter files %v", s.Adapters)
			}
			cfg := tu.res.Config
			merged := map[layers.WeightKey]*graph.Tensor{}
			for di, d := range cfg.Defenses {
				ts, _, err := safetensors.ReadFile(filepath.Join(ad, d, export.AdapterWeightsFile))
				if err != nil {
					t.Fatal(err)
				}
				var want []string
				for _, tg := range tu.res.Targets {
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
				for _, tg := range tu.res.Targets {
					a, b := ts["base_model.model."+tg.Name+".lora_A.weight"], ts["base_model.model."+tg.Name+".lora_B.weight"]
					if !slices.Equal(a.Shape, []int{cfg.Rank, tg.In}) || !slices.Equal(b.Shape, []int{tg.Out, cfg.Rank}) {
						t.Fatalf("%s %s: A %v, B %v", d, tg.Name, a.Shape, b.Shape)
					}
					w := merged[tg.Key]
					if w == nil {
						w = m.Graph.ParamByName(tg.Key.Init).Const.Clone()
						merged[tg.Key] = w
					}
					addDelta(w, tg, a, b, float32(tu.res.Lambda[di])*float32(cfg.Alpha)/float32(cfg.Rank))
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
				for _, tg := range tu.res.Targets {
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
				if d := testutil.MaxAbsDiff(w.F, tu.weights[wn].F); d > 1e-5 {
					t.Errorf("%s: the adapters' merge differs from the tuned weights by %g", wn, d)
				}
			}
			head, _, err := safetensors.ReadFile(filepath.Join(ad, export.HeadFile))
			if err != nil {
				t.Fatal(err)
			}
			hw, hb := head[tu.head.Name+".weight"], head[tu.head.Name+".bias"]
			if hw == nil || hb == nil || len(head) != 2 || !slices.Equal(hw.Shape, []int{tu.head.Out, tu.head.In}) ||
				testutil.MaxAbsDiff(hw.F, tu.weights[tu.head.Key].F) != 0 ||
				testutil.MaxAbsDiff(hb.F, tu.weights[layers.WeightKey{Init: tu.head.Bias.Name}].F) != 0 {
				t.Errorf("head file %v", head)
			}
		})
	}
}

// An unmerged export with the merge weights computes the merged model; with
// one defense, the source with that defense's LoRA merged. Its original
// nodes are unchanged but for the renamed outputs of the adapted MatMuls and
// Gemms; every name is unique, the order topological; onnxruntime agrees.
func TestUnmerged(t *testing.T) {
	for _, name := range []string{tvModel, hfModel} {
		t.Run(name, func(t *testing.T) {
			dir, tu, m := tunedWorkspace(t, fixture(name))
			src, _ := decode(t, fixture(name))
			tuned := reference(t, m, tu.weights)
			for _, defense := range []string{"", "trades"} {
				out := filepath.Join(t.TempDir(), "lora.onnx")
				s, err := export.FromWorkspace(export.Request{Workspace: dir, Out: out, Unmerged: true, Defense: defense})
				if err != nil {
					t.Fatal(err)
				}
				want := tuned
				nBranches := 3
				if defense != "" {
					nBranches = 1
					hb := layers.WeightKey{Init: tu.head.Bias.Name}
					w := map[layers.WeightKey]*graph.Tensor{tu.head.Key: tu.weights[tu.head.Key], hb: tu.weights[hb]}
					for _, tg := range tu.res.Targets {
						wt := w[tg.Key]
						if wt == nil {
							wt = m.Graph.ParamByName(tg.Key.Init).Const.Clone()
							w[tg.Key] = wt
						}
						addDelta(wt, tg, tu.lora[defense+"/"+tg.Name+".lora_A.weight"], tu.lora[defense+"/"+tg.Name+".lora_B.weight"], float32(tu.res.Scale))
					}
					want = reference(t, m, w)
				}
				if s.Model.Replaced != 2 || s.Model.AddedInits != 3*len(tu.res.Targets) || s.Model.MaxDiff > 1e-4 {
					t.Errorf("%q: report %+v", defense, s.Model)
				}
				got, _ := decode(t, out)
				checkUnmergedGraph(t, src, got, tu, nBranches, defense)
				c := loadClassifier(t, out)
				for _, b := range []int{1, 3} {
					x := pixels(c, b, uint64(10+b))
					ours := logits(t, c, x)
					if d := testutil.MaxAbsDiff(ours.F, logits(t, want, x).F); d > 1e-4 {
						t.Errorf("%q batch %d: the unmerged model differs from the merged one by %g", defense, b, d)
					}
					if d := testutil.MaxAbsDiff(ortLogits(t, out, x).F, ours.F); d > 1e-4 {
						t.Errorf("%q batch %d: onnxruntime differs from us by %g", defense, b, d)
					}
				}
			}
		})
	}
}

func checkUnmergedGraph(t *testing.T, src, got *onnx.ModelProto, tu *tuning, ranks int, defense string) {
	t.Helper()
	// the original nodes, in order, unchanged but for the adapted nodes' outputs
	adapted := map[string]bool{}
	weights := map[string]bool{}
	for _, tg := range tu.res.Targets {
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
		if !bytes.Equal(encodeMsg(t, n), encodeMsg(t, g)) {
			if g.Output[0] == n.Output[0] || !slices.Equal(g.Output[1:], n.Output[1:]) || !slices.Equal(g.Input, n.Input) ||
				n.GetOpType() != "MatMul" && n.GetOpType() != "Gemm" {
				t.Errorf("node %s changed beyond its output's name", n.GetName())
			}
			adapted[n.GetName()] = true
		}
	}
	if len(adapted) != len(tu.res.Targets) {
		t.Errorf("%d nodes adapted, want %d", len(adapted), len(tu.res.Targets))
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
	r := tu.res.Config.Rank * ranks
	for _, tg := range tu.res.Targets {
		a, b := inits[tg.Name+".lora_A.weight"], inits[tg.Name+".lora_B.weight"]
		if a == nil || b == nil || !slices.Equal(a.Dims, []int64{int64(r), int64(tg.In)}) || !slices.Equal(b.Dims, []int64{int64(tg.Out), int64(r)}) {
			t.Fatalf("%s: LoRA initializers %v %v", tg.Name, a.GetDims(), b.GetDims())
		}
		if defense != "" && testutil.MaxAbsDiff(floats(a.RawData), tu.lora[defense+"/"+tg.Name+".lora_A.weight"].F) != 0 {
			t.Errorf("%s: A is not the defense's", tg.Name)
		}
	}
}

// Two layers on one initializer: the unmerged export adds both LoRAs at both
// readers, as the merged weight holds both deltas.
func TestUnmergedShared(t *testing.T) {
	srcDir := t.TempDir()
	path, _ := sharedModel(t, srcDir)
	dir := filepath.Join(srcDir, "ws")
	ws, m := newWorkspace(t, path, dir)
	tu := fakeTuning(t, dir, ws, m, 9)
	out := filepath.Join(t.TempDir(), "lora.onnx")
	s, err := export.FromWorkspace(export.Request{Workspace: dir, Out: out, Unmerged: true})
	if err != nil {
		t.Fatal(err)
	}
	if s.Model.AddedInits != 3*(len(tu.res.Targets)-1) {
		t.Errorf("%d initializers added for %d layers on %d weights", s.Model.AddedInits, len(tu.res.Targets), len(tu.res.Targets)-1)
	}
	c := loadClassifier(t, out)
	x := pixels(c, 3, 3)
	want := logits(t, reference(t, m, tu.weights), x)
	if d := testutil.MaxAbsDiff(logits(t, c, x).F, want.F); d > 1e-4 {
		t.Errorf("the unmerged model differs from the merged one by %g", d)
	}
	if d := testutil.MaxAbsDiff(ortLogits(t, out, x).F, want.F); d > 1e-4 {
		t.Errorf("onnxruntime differs from the merged model by %g", d)
	}
}

// A real (tiny) tuning run's result exports: merged, unmerged, adapters.
func TestTrainerResult(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ws")
	ws, m := newWorkspace(t, fixture(hfModel), dir)
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
	if err := tr.WriteResult(dir, hyperat.Result{ModelSHA256: ws.Source.SHA256, Lambda: []float64{0.2, 0.3, 0.5}}); err != nil {
		t.Fatal(err)
	}
	_, weights, err := hyperat.ReadResult(dir)
	if err != nil {
		t.Fatal(err)
	}
	tuned := reference(t, m, weights)
	outDir := t.TempDir()
	for _, r := range []export.Request{
		{Out: filepath.Join(outDir, "robust.onnx"), Adapters: filepath.Join(outDir, "adapters")},
		{Out: filepath.Join(outDir, "lora.onnx"), Unmerged: true},
	} {
		r.Workspace = dir
		s, err := export.FromWorkspace(r)
		if err != nil {
			t.Fatal(err)
		}
		c := loadClassifier(t, r.Out)
		x := pixels(c, 2, 4)
		if d := testutil.MaxAbsDiff(logits(t, c, x).F, logits(t, tuned, x).F); d > 1e-4 {
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
