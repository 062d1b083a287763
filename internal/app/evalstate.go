package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hyperat/hyperat/attack"
	"github.com/hyperat/hyperat/fsx"
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/internal/version"
	"github.com/hyperat/hyperat/npy"
)

// stateKey is what an evaluation's state was made for: a state is continued
// only by the same evaluation, so that the result of an interrupted and
// continued run is the one an uninterrupted run gives, bit for bit.
type stateKey struct {
	Version      string   `json:"version"`
	ModelSHA256  string   `json:"model_sha256"`
	ImagesSHA256 string   `json:"images_sha256"` // the whole list's images as evaluated, their labels and indices
	Kernels      string   `json:"kernels"`
	List         int      `json:"list"`            // the images of the whole list
	Shard        string   `json:"shard,omitempty"` // --shard and --shard-mode
	N            int      `json:"n"`               // the images this run evaluates
	Eps          float64  `json:"eps"`
	Attacks      []string `json:"attacks"`
	Seed         uint64   `json:"seed"`
	Batch        int      `json:"batch"`
	SaveAdv      string   `json:"save_adv"`
}

// differs names the first thing in which the state's key k differs from the
// run's key now, or "".
func (k stateKey) differs(now stateKey) string {
	short := func(s string) string { return s[:min(len(s), 12)] }
	switch {
	case k.ModelSHA256 != now.ModelSHA256:
		return fmt.Sprintf("another model (sha256 %s, this one %s)", short(k.ModelSHA256), short(now.ModelSHA256))
	case k.List != now.List:
		return fmt.Sprintf("%d images (now %d)", k.List, now.List)
	case k.ImagesSHA256 != now.ImagesSHA256:
		return "other images or labels"
	case k.Shard != now.Shard:
		return fmt.Sprintf("--shard %q (now %q)", k.Shard, now.Shard)
	case k.N != now.N:
		return fmt.Sprintf("%d images in the shard (now %d)", k.N, now.N)
	case k.Eps != now.Eps:
		return fmt.Sprintf("eps %v (now %v)", k.Eps, now.Eps)
	case !slices.Equal(k.Attacks, now.Attacks):
		return fmt.Sprintf("the attacks %s (now %s)", strings.Join(k.Attacks, ","), strings.Join(now.Attacks, ","))
	case k.Seed != now.Seed:
		return fmt.Sprintf("seed %d (now %d)", k.Seed, now.Seed)
	case k.Batch != now.Batch:
		return fmt.Sprintf("--batch %d (now %d)", k.Batch, now.Batch)
	case k.SaveAdv != now.SaveAdv:
		return fmt.Sprintf("--save-adv %q (now %q)", k.SaveAdv, now.SaveAdv)
	case k.Version != now.Version:
		return fmt.Sprintf("hyperat-eval %s (this is %s)", k.Version, now.Version)
	case k.Kernels != now.Kernels:
		return fmt.Sprintf("the kernels %s (this machine's are %s)", k.Kernels, now.Kernels)
	}
	return ""
}

// evalState is the state file: the records of the first Done images.
type evalState struct {
	Key     stateKey        `json:"key"`
	Done    int             `json:"done"`
	Records []attack.Record `json:"records"`
}

// resume reads the state file, if there is one, and takes its records when
// it was made for this evaluation; a state made for another is refused.
func (r *robustRun) resume() error {
	r.st = evalState{Key: r.key}
	p := r.o.statePath()
	if p == "" {
		return nil
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %v", p, err)
	}
	var st evalState
	if err := json.Unmarshal(b, &st); err != nil || st.Key.ModelSHA256 == "" || st.Key.N < 1 || st.Key.Batch < 1 {
		return fmt.Errorf("%s: not the state of an hyperat-eval run; remove it to start over, or give another --state", p)
	}
	if why := st.Key.differs(r.key); why != "" {
		return fmt.Errorf("%s holds the state of an interrupted evaluation with %s; remove it to start over, or give another --state", p, why)
	}
	if st.Done < 0 || st.Done > st.Key.N || len(st.Records) != st.Done || (st.Done%st.Key.Batch != 0 && st.Done != st.Key.N) {
		return fmt.Errorf("%s: damaged state (%d images done, %d records); remove it to start over", p, st.Done, len(st.Records))
	}
	for i, rec := range st.Records {
		if rec.Index != r.idx[i] {
			return fmt.Errorf("%s: damaged state (record %d is of image %d, want %d); remove it to start over", p, i, rec.Index, r.idx[i])
		}
	}
	r.st = st
	return nil
}

// writeState replaces the state file with the records so far.
func (r *robustRun) writeState() error {
	p := r.o.statePath()
	if p == "" {
		return nil
	}
	b, err := json.Marshal(r.st)
	if err != nil {
		return err
	}
	return fsx.WriteFile(p, append(b, '\n'))
}

// robustReport is the --json file: the evaluation's settings and totals
// (what a RobustBench entry gives: clean and AutoAttack accuracy, the norm,
// eps, the number of images, the suite's version), the model's SHA-256, the
// tool's version, what a merge of shards checks (the image list's SHA-256,
// the kernels, --batch), and under "images" one record per image. A shard's
// report says which shard it is; its totals are over its own images.
type robustReport struct {
	Tool               string             `json:"tool"`
	Version            string             `json:"version"`
	Model              string             `json:"model"`
	ModelSHA256        string             `json:"model_sha256"`
	Data               string             `json:"data"`
	ImagesSHA256       string             `json:"images_sha256"`
	Split              string             `json:"split"`
	Norm               string             `json:"norm"`
	Eps                float64            `json:"eps"`
	N                  int                `json:"n"`
	Seed               uint64             `json:"seed"`
	Batch              int                `json:"batch"`
	Kernels            string             `json:"kernels"`
	Attacks            []string           `json:"attacks"`
	Shard              *shardReport       `json:"shard,omitempty"`
	CleanAccuracy      float64            `json:"clean_accuracy"`
	AutoAttackAccuracy *float64           `json:"autoattack_accuracy,omitempty"`
	Suite              *suiteReport       `json:"autoattack,omitempty"`
	Results            map[string]float64 `json:"results"`
	Warnings           []string           `json:"warnings"`
	images             []attack.Record
}

// shardReport is what a shard's report adds: which shard it is, the size of
// the whole list, and the model checks' warnings (made on the list's first
// batch by every shard), which a merge carries over.
type shardReport struct {
	shardSpec
	List   int      `json:"list"`
	Checks []string `json:"checks"`
}

// suiteReport describes the autoattack suite of a report.
type suiteReport struct {
	Version   string   `json:"version"`
	Reference string   `json:"reference"`
	Attacks   []string `json:"attacks"`
	// RobustAfter is the accuracy after each attack of the suite, on the
	// images every earlier one failed on.
	RobustAfter map[string]float64 `json:"robust_after"`
}

// report builds the report from the records.
func (r *robustRun) report() *robustReport {
	rep := &robustReport{Tool: r.c.Name, Version: version.String(), Model: filepath.Base(r.o.model),
		ModelSHA256: r.key.ModelSHA256, Data: r.o.data, ImagesSHA256: r.key.ImagesSHA256, Split: "test", Norm: "Linf",
		Eps: r.eps, Seed: r.o.seed, Batch: r.o.batch, Kernels: r.key.Kernels, Attacks: r.ev.Names()}
	if sh := r.o.shard; sh != nil {
		rep.Shard = &shardReport{shardSpec: *sh, List: r.listN, Checks: slices.Clone(r.warn)}
		if rep.Shard.Checks == nil {
			rep.Shard.Checks = []string{}
		}
	}
	rep.total(r.warn, r.st.Records)
	return rep
}

// total sets the report's images to recs and its totals from them, with
// the warnings of the model's checks followed by the suite's.
func (rep *robustReport) total(checks []string, recs []attack.Record) {
	n := float64(len(recs))
	rep.N, rep.images, rep.Results = len(recs), recs, map[string]float64{}
	rep.Warnings = append(slices.Clone(checks), attack.SuiteWarnings(recs)...)
	if rep.Warnings == nil {
		rep.Warnings = []string{}
	}
	clean := 0
	for _, rec := range recs {
		if rec.CleanPred == rec.Label {
			clean++
		}
	}
	rep.CleanAccuracy = float64(clean) / n
	for _, name := range rep.Attacks {
		k := 0
		for _, rec := range recs {
			if rec.Robust[name] {
				k++
			}
		}
		rep.Results[name] = float64(k) / n
	}
	rep.AutoAttackAccuracy, rep.Suite = nil, nil
	if acc, ok := rep.Results["autoattack"]; ok {
		rep.AutoAttackAccuracy = &acc
		rep.Suite = suiteOf(recs)
	}
}

// suiteOf is the suite's part of a report: the robust accuracy after each
// of its attacks, counted from which attack fooled each image first.
func suiteOf(recs []attack.Record) *suiteReport {
	s := &suiteReport{Version: "standard", RobustAfter: map[string]float64{},
		Reference: "https://github.com/fra31/auto-attack, version='standard', norm='Linf' (see attack/README.md)"}
	for _, a := range attack.NewAutoAttack().Attacks {
		s.Attacks = append(s.Attacks, a.Name())
	}
	for k, a := range s.Attacks {
		robust := 0
		for _, rec := range recs {
			if rec.CleanPred == rec.Label && !slices.Contains(s.Attacks[:k+1], rec.FooledBy) {
				robust++
			}
		}
		s.RobustAfter[a] = float64(robust) / float64(len(recs))
	}
	return s
}

func (rep *robustReport) encode() ([]byte, error) { return encodeLines(rep, "images", rep.images) }

// advSaver writes the attacks' examples under --save-adv: one file per batch
// and attack while the run goes (in a subfolder, so that a continued run
// finds them), put together into one file per attack at the end.
type advSaver struct {
	dir, parts string
	names      []string // per name of the evaluation; "" for clean
}

const partsDir = ".hyperat-eval-batches"

func newAdvSaver(dir string, names []string) (*advSaver, error) {
	if st, err := os.Stat(dir); err == nil && !st.IsDir() {
		return nil, fmt.Errorf("--save-adv %s: is a file, want a folder", dir)
	}
	s := &advSaver{dir: dir, parts: filepath.Join(dir, partsDir)}
	if err := os.MkdirAll(s.parts, 0o755); err != nil {
		return nil, fmt.Errorf("--save-adv %s: %v", dir, bareErr(err))
	}
	for _, n := range names {
		if n == "clean" {
			n = ""
		}
		s.names = append(s.names, n)
	}
	return s, nil
}

func (s *advSaver) part(name string, b int) string {
	return filepath.Join(s.parts, fmt.Sprintf("%s.%06d.npy", name, b))
}

// save writes batch b's examples, advs[k] those of the k-th name.
func (s *advSaver) save(b int, advs []*graph.Tensor) error {
	for k, name := range s.names {
		if name == "" {
			continue
		}
		if err := npy.WriteFile(s.part(name, b), advs[k]); err != nil {
			return fmt.Errorf("--save-adv: %v", err)
		}
	}
	return nil
}

// finish writes DIR/<attack>.npy (float32 [N, C, H, W]) for each attack,
// DIR/index.npy (the images' indices in the dataset) and DIR/labels.npy
// (int64 [N] both), from the batches' files, and removes those.
func (s *advSaver) finish(shape []int, idx, y []int, batches int) error {
	n, d := len(idx), graph.Numel(shape)
	for _, name := range s.names {
		if name == "" {
			continue
		}
		all := graph.NewTensor(graph.Float32, append([]int{n}, shape...))
		off := 0
		for b := range batches {
			t, err := npy.ReadFile(s.part(name, b))
			if err != nil {
				return fmt.Errorf("--save-adv: %v (the examples of an earlier run are missing; remove the run's state to start over)", err)
			}
			if t.DType != graph.Float32 || len(t.F)%d != 0 || off+len(t.F) > len(all.F) {
				return fmt.Errorf("--save-adv: %s is not a batch of this run's examples", s.part(name, b))
			}
			off += copy(all.F[off:], t.F)
		}
		if off != len(all.F) {
			return fmt.Errorf("--save-adv: the batches of %s hold %d images, want %d", name, off/d, n)
		}
		if err := npy.WriteFile(filepath.Join(s.dir, name+".npy"), all); err != nil {
			return fmt.Errorf("--save-adv: %v", err)
		}
	}
	for file, v := range map[string][]int{"index.npy": idx, "labels.npy": y} {
		t := graph.NewTensor(graph.Int64, []int{len(v)})
		for i, e := range v {
			t.I[i] = int64(e)
		}
		if err := npy.WriteFile(filepath.Join(s.dir, file), t); err != nil {
			return fmt.Errorf("--save-adv: %v", err)
		}
	}
	return os.RemoveAll(s.parts)
}

// bareErr drops the path from an *os.PathError (the message names it).
func bareErr(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
