// The export of a workspace's tuning result: hyperat-export reads and checks
// the workspace, then package export writes the model.

package app

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/hyperat/hyperat/export"
	"github.com/hyperat/hyperat/fsx"
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/hyperat"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/layers"
	"github.com/hyperat/hyperat/lora"
	"github.com/hyperat/hyperat/onnx"
	"github.com/hyperat/hyperat/safetensors"
	"github.com/hyperat/hyperat/workspace"
)

// exportRequest is one export of a workspace's tuning result.
type exportRequest struct {
	Workspace string // the workspace folder
	Out       string // the ONNX file to write
	// Adapters, when set, is a folder that receives each defense's LoRA in
	// PEFT's layout (<Adapters>/<defense>/) and the trained head
	// (<Adapters>/head.safetensors).
	Adapters string
	// Unmerged writes the LoRAs as nodes instead of merging them: all
	// defenses' LoRAs weighted by the merge weights (so the model equals the
	// merged one), or Defense's alone.
	Unmerged bool
	Defense  string
	// Force exports a result whose tuning collapsed (validation clean
	// accuracy near chance), which is refused otherwise.
	Force bool
	Seed  uint64
}

// exportSummary is what exportWorkspace wrote.
type exportSummary struct {
	Model *export.Report
	Mode  string // "merged", "unmerged, the LoRA of pgdat", ...
	// Reference names the model the written file was checked against.
	Reference string
	Adapters  []string
	Method    string
	Defenses  []string
}

// headFile holds the trained classifier head beside the adapters, under
// PyTorch's parameter names (<head>.weight [out, in], <head>.bias).
const headFile = "head.safetensors"

// exportWorkspace exports a workspace's tuning result: the workspace's copy of
// the source model with the tuned weights (or, with Unmerged, the LoRAs as
// nodes), checked against the tuned model in memory, then the adapters when
// asked for. Every input is read and checked before anything is written; the
// source model, the workspace's files and the source's data files are never
// written.
func exportWorkspace(r exportRequest) (*exportSummary, error) {
	tw, err := readTuned(r)
	if err != nil {
		return nil, err
	}
	tuned, err := hyperat.WithWeights(tw.m, tw.m.Graph, tw.weights)
	if err != nil {
		return nil, fmt.Errorf("the tuned model: %v", err)
	}
	s := &exportSummary{Mode: "merged", Reference: "the tuned model", Method: tw.res.Config.Method, Defenses: defenseNames(tw.res)}
	if r.Adapters != "" || r.Unmerged {
		if err := tw.readFactors(); err != nil {
			return nil, err
		}
	}
	o := export.Options{Protect: tw.protect, Reference: tuned, Seed: r.Seed, Imported: tw.m}
	if r.Unmerged {
		err = tw.exportUnmerged(r, o, s)
	} else {
		s.Model, err = export.Merged(tw.src, tw.dir, tw.weights, r.Out, o)
	}
	if err != nil {
		return nil, err
	}
	if r.Adapters != "" {
		if s.Adapters, err = writeAdapters(r.Adapters, tw.ws, tw.res, tw.weights, tw.factors); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// tunedWorkspace is a workspace's tuning result and model, read and checked.
type tunedWorkspace struct {
	dir     string
	ws      *workspace.Workspace
	res     *hyperat.Result
	weights map[layers.WeightKey]*graph.Tensor
	factors map[string]*graph.Tensor // adapters.safetensors, when read
	protect []export.Protected
	src     *onnx.ModelProto
	m       *onnximport.Model
}

// readTuned reads the workspace of r and checks what an export needs of it:
// a result that did not collapse (unless forced) with finite weights, made
// for the workspace's model, whose copy is unchanged; output paths that are
// not protected.
func readTuned(r exportRequest) (*tunedWorkspace, error) {
	if r.Defense != "" && !r.Unmerged {
		return nil, errors.New("a defense is chosen only for an unmerged export")
	}
	dir := r.Workspace
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		if err == nil || errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("workspace %s does not exist; make one with hyperat-import", dir)
		}
		return nil, fmt.Errorf("workspace %s: %v", dir, fsx.Bare(err))
	}
	tw := &tunedWorkspace{dir: dir}
	var err error
	if tw.ws, err = workspace.Read(dir); err != nil {
		return nil, err
	}
	if tw.res, tw.weights, err = workspace.ReadResult(dir); err != nil {
		return nil, err
	}
	tw.protect = protected(dir, tw.ws)
	if err := export.CheckOutput(r.Out, tw.protect); err != nil {
		return nil, err
	}
	if r.Adapters != "" {
		if err := checkAdapterDir(r.Adapters, defenseNames(tw.res), tw.protect); err != nil {
			return nil, err
		}
	}
	if tw.res.Collapsed && !r.Force {
		return nil, fmt.Errorf("the tuning result in %s collapsed (validation clean accuracy near chance), so the model is useless; tune again, or export it anyway with --force",
			workspace.TunedDir(dir))
	}
	for _, name := range slices.SortedFunc(maps.Keys(tw.weights), layers.WeightKey.Compare) {
		if !lora.Finite(tw.weights[name].F) {
			return nil, fmt.Errorf("%s: weight %q holds NaN or infinite values (the tuning diverged); run hyperat-tune again",
				filepath.Join(workspace.TunedDir(dir), workspace.WeightsFile), name)
		}
	}
	return tw, tw.readModel()
}

// readModel reads and imports the workspace's copy of the model, which must
// be the one imported and the one tuned.
func (tw *tunedWorkspace) readModel() error {
	var err error
	if tw.m, err = workspace.LoadModel(tw.dir, tw.ws); err != nil {
		return err
	}
	if sha := tw.res.ModelSHA256; sha != "" && sha != tw.ws.Source.SHA256 {
		return fmt.Errorf("the tuning result in %s was made for another model (sha256 %.12s, the workspace's is %.12s); run hyperat-tune again",
			workspace.TunedDir(tw.dir), sha, tw.ws.Source.SHA256)
	}
	tw.src = tw.m.Proto
	return nil
}

// readFactors reads adapters.safetensors and checks that the LoRAs merge
// into the tuned weights.
func (tw *tunedWorkspace) readFactors() error {
	if len(tw.res.Targets) == 0 {
		return fmt.Errorf("the tuning (method %s) trained no LoRA, so there are no adapters to export; export the merged model", tw.res.Config.Method)
	}
	var err error
	if tw.factors, err = workspace.ReadAdapters(tw.dir); err != nil {
		return err
	}
	return checkAdapters(tw.res, tw.m.Graph, tw.weights, tw.factors)
}

// exportUnmerged writes the source with the LoRAs of r (the merge, or one
// defense's) as nodes and the other tuned weights replaced.
func (tw *tunedWorkspace) exportUnmerged(r exportRequest, o export.Options, s *exportSummary) error {
	branches, mode, err := unmergedBranches(tw.res, tw.factors, r.Defense)
	if err != nil {
		return err
	}
	s.Mode = mode
	rest := maps.Clone(tw.weights)
	for _, tg := range tw.res.Targets {
		delete(rest, tg.Key)
	}
	if r.Defense != "" {
		// the reference is the source with this defense's LoRA merged
		w, err := export.MergeBranches(tw.m.Graph, rest, branches)
		if err != nil {
			return err
		}
		if o.Reference, err = hyperat.WithWeights(tw.m, tw.m.Graph, w); err != nil {
			return fmt.Errorf("the model with the LoRA of %s: %v", r.Defense, err)
		}
		s.Reference = "the source model with this LoRA merged (and the tuned head)"
	}
	s.Model, err = export.Unmerged(tw.src, tw.dir, rest, branches, r.Out, o)
	return err
}

// protected lists the files an export of the workspace in dir never writes.
func protected(dir string, ws *workspace.Workspace) []export.Protected {
	p := []export.Protected{
		{Path: ws.Source.Abs, What: "the source model"},
		{Path: workspace.ModelPath(dir), What: "the workspace's copy of the source model"},
		{Path: filepath.Join(dir, workspace.ManifestFile), What: "the workspace's description"},
	}
	for _, f := range []string{workspace.WeightsFile, workspace.AdaptersFile, workspace.ResultFile} {
		p = append(p, export.Protected{Path: filepath.Join(workspace.TunedDir(dir), f), What: "part of the tuning result"})
	}
	for _, loc := range ws.ExternalData {
		if rel, err := export.LocalPath(loc); err == nil {
			p = append(p, export.Protected{Path: filepath.Join(dir, rel), What: "an external data file of the workspace's model"})
			p = append(p, export.Protected{Path: filepath.Join(filepath.Dir(ws.Source.Abs), rel), What: "an external data file of the source model"})
		}
	}
	return p
}

// defenseNames are the defenses of a result as adapters.safetensors names them.
func defenseNames(res *hyperat.Result) []string {
	var out []string
	for _, d := range res.Config.Defenses {
		out = append(out, strings.ToLower(d))
	}
	return out
}

// lambda is the result's merge weights, one per defense.
func lambda(res *hyperat.Result) ([]float64, error) {
	n := len(res.Config.Defenses)
	switch {
	case len(res.Lambda) == n && n > 0:
		return res.Lambda, nil
	case len(res.Lambda) == 0 && n == 1:
		return []float64{1}, nil
	}
	return nil, fmt.Errorf("the tuning result has %d merge weights for %d defenses; run hyperat-tune again", len(res.Lambda), n)
}

// adapted returns target tg carrying defense d's LoRA from
// adapters.safetensors (the factors read from disk) and the result's scale.
func adapted(factors map[string]*graph.Tensor, d string, tg lora.Layer, res *hyperat.Result) (lora.Layer, error) {
	ka, kb := tg.FactorNames(d + "/")
	a, b := factors[ka], factors[kb]
	if a == nil || b == nil {
		return tg, fmt.Errorf("%s has no LoRA of %s for %s; run hyperat-tune again", workspace.AdaptersFile, tg.Name, d)
	}
	rank := res.Config.Rank
	if !slices.Equal(a.Shape, []int{rank, tg.In}) || !slices.Equal(b.Shape, []int{tg.Out, rank}) {
		return tg, fmt.Errorf("%s: the LoRA of %s for %s is A %v, B %v; want [%d,%d] and [%d,%d]",
			workspace.AdaptersFile, tg.Name, d, a.Shape, b.Shape, rank, tg.In, tg.Out, rank)
	}
	return tg.With(a, b, float32(res.Scale)), nil
}

// mergedBranches are the result's LoRAs: every defense's, each B weighted
// by its merge weight, so that merging them gives the tuned weights.
func mergedBranches(res *hyperat.Result, factors map[string]*graph.Tensor) ([]lora.Layer, error) {
	lam, err := lambda(res)
	if err != nil {
		return nil, err
	}
	var out []lora.Layer
	for m, d := range defenseNames(res) {
		if lam[m] == 0 {
			continue
		}
		for _, tg := range res.Targets {
			l, err := adapted(factors, d, tg, res)
			if err != nil {
				return nil, err
			}
			l.B = l.B.Clone()
			for i := range l.B.F {
				l.B.F[i] *= float32(lam[m])
			}
			out = append(out, l)
		}
	}
	return out, nil
}

// unmergedBranches are the LoRAs of an unmerged export: the merge (defense
// "") or one defense's LoRA.
func unmergedBranches(res *hyperat.Result, factors map[string]*graph.Tensor, defense string) ([]lora.Layer, string, error) {
	if defense == "" {
		br, err := mergedBranches(res, factors)
		if err != nil {
			return nil, "", err
		}
		lam, _ := lambda(res)
		mode := "unmerged, the merge of " + strings.Join(defenseNames(res), ", ")
		if len(lam) > 1 {
			var ws []string
			for _, l := range lam {
				ws = append(ws, strconv.FormatFloat(l, 'g', 3, 64))
			}
			mode += " (lambda " + strings.Join(ws, "/") + ")"
		}
		return br, mode, nil
	}
	d := strings.ToLower(defense)
	if !slices.Contains(defenseNames(res), d) {
		return nil, "", fmt.Errorf("--defense %s: the tuning used %s", defense, strings.Join(defenseNames(res), ", "))
	}
	var out []lora.Layer
	for _, tg := range res.Targets {
		l, err := adapted(factors, d, tg, res)
		if err != nil {
			return nil, "", err
		}
		out = append(out, l)
	}
	return out, "unmerged, the LoRA of " + d, nil
}

// checkAdapters checks that the adapters reproduce the tuned weights: the
// source's weights plus the merged LoRAs equal weights.safetensors.
func checkAdapters(res *hyperat.Result, g *graph.Graph, weights map[layers.WeightKey]*graph.Tensor, factors map[string]*graph.Tensor) error {
	br, err := mergedBranches(res, factors)
	if err != nil {
		return err
	}
	merged, err := export.MergeBranches(g, nil, br)
	if err != nil {
		return err
	}
	for _, key := range slices.SortedFunc(maps.Keys(merged), layers.WeightKey.Compare) {
		w := merged[key]
		got := weights[key]
		if got == nil {
			return fmt.Errorf("%s lacks the adapted weight %q; run hyperat-tune again", workspace.WeightsFile, key)
		}
		if d := export.MaxAbsDiff(got.F, w.F); !(d <= export.Tolerance*max(1, maxAbs(w.F))) {
			return fmt.Errorf("%s and %s disagree on %q (by %.3g): the tuning result is damaged; run hyperat-tune again",
				workspace.AdaptersFile, workspace.WeightsFile, key, d)
		}
	}
	return nil
}

func maxAbs(x []float32) float64 {
	m := 0.0
	for _, v := range x {
		m = max(m, math.Abs(float64(v)))
	}
	return m
}

// checkAdapterDir checks, before anything is written, that the adapters'
// files may be written: dir is a folder or can be made, and no file is
// protected.
func checkAdapterDir(dir string, defenses []string, protect []export.Protected) error {
	if st, err := os.Stat(dir); err == nil && !st.IsDir() {
		return fmt.Errorf("adapter folder %s is a file", dir)
	}
	files := []string{filepath.Join(dir, headFile)}
	for _, d := range defenses {
		files = append(files, filepath.Join(dir, d, export.AdapterWeightsFile), filepath.Join(dir, d, export.AdapterConfigFile))
	}
	for _, f := range files {
		if err := export.CheckProtected(f, protect); err != nil {
			return err
		}
	}
	return nil
}

// writeAdapters writes each defense's adapter and the trained head.
func writeAdapters(dir string, ws *workspace.Workspace, res *hyperat.Result, weights map[layers.WeightKey]*graph.Tensor, factors map[string]*graph.Tensor) ([]string, error) {
	var files []string
	for _, d := range defenseNames(res) {
		a := export.Adapter{BaseModel: filepath.Base(ws.Source.Path), Rank: res.Config.Rank, Alpha: res.Config.Alpha}
		for _, tg := range res.Targets {
			l, err := adapted(factors, d, tg, res)
			if err != nil {
				return nil, err
			}
			a.Layers = append(a.Layers, l)
		}
		f, err := export.WriteAdapter(filepath.Join(dir, d), a)
		if err != nil {
			return nil, err
		}
		files = append(files, f...)
	}
	head, err := headTensors(ws, weights)
	if err != nil {
		return nil, err
	}
	if len(head) > 0 {
		p := filepath.Join(dir, headFile)
		if err := safetensors.WriteFile(p, head, map[string]string{"format": "pt"}); err != nil {
			return nil, err
		}
		files = append(files, p)
	}
	return files, nil
}

// headTensors are the trained head's weight ([out, in], PyTorch's layout) and
// bias under the head's module name, when the tuning trained the head.
func headTensors(ws *workspace.Workspace, weights map[layers.WeightKey]*graph.Tensor) (map[string]*graph.Tensor, error) {
	out := map[string]*graph.Tensor{}
	for _, l := range ws.Layers {
		if l.Kind != layers.KindHead {
			continue
		}
		if w, ok := weights[layers.WeightKey{Init: l.Weight}]; ok {
			if len(w.Shape) != 2 || w.Numel() != l.In*l.Out {
				return nil, fmt.Errorf("the tuned head %s is %v, not %dx%d", l.Name, w.Shape, l.Out, l.In)
			}
			if !l.Transposed { // [in, out] in the ONNX file
				t := graph.NewTensor(graph.Float32, []int{l.Out, l.In})
				for i := 0; i < l.In; i++ {
					for o := 0; o < l.Out; o++ {
						t.F[o*l.In+i] = w.F[i*l.Out+o]
					}
				}
				w = t
			}
			out[l.Name+".weight"] = w
		}
		if b, ok := weights[layers.WeightKey{Init: l.Bias}]; l.Bias != "" && ok {
			out[l.Name+".bias"] = b
		}
	}
	return out, nil
}
