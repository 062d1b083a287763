package app

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hyperat/hyperat/attack"
	"github.com/hyperat/hyperat/data"
	"github.com/hyperat/hyperat/fsx"
	"github.com/hyperat/hyperat/graph"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/cli"
	"github.com/hyperat/hyperat/internal/version"
	"github.com/hyperat/hyperat/model"
)

// evalOptions are hyperat-eval's flags in robustness mode (--data).
type evalOptions struct {
	model, data, eps, attacks, suite string
	limit, batch                     int
	seed                             uint64
	json, state, saveAdv             string
	maxMemory                        string
	shard                            *shardSpec // nil: the whole list
}

// statePath is where the run's state goes: --state, else next to --json,
// else nowhere (the run cannot be continued).
func (o evalOptions) statePath() string {
	switch {
	case o.state != "":
		return o.state
	case o.json != "":
		return o.json + ".state"
	}
	return ""
}

// robustRun is one robustness evaluation: the model, the images, the
// attacks, and the records made so far.
type robustRun struct {
	c     *cli.Command
	o     evalOptions
	eps   float64
	m     *model.Classifier
	idx   []int  // the images' indices in the dataset (the shard's, with --shard)
	listN int    // the images of the whole list, all shards together
	conv  string // how the images are converted for the model, or ""
	x     *graph.Tensor
	y     []int
	headX *graph.Tensor // the list's first batch, on which the model is checked
	headY []int
	ev    *attack.Evaluation
	key   stateKey
	st    evalState
	saver *advSaver
	warn  []string
	bar   *bar
	pass  int // images per pass within the memory budget (at most the batch)
	// mu is held while the state is written and while the run finishes, so
	// that an interruption never leaves either half done.
	mu       sync.Mutex
	finished bool
}

// evalRobust measures clean and adversarial accuracy of a classifier on the
// test split of a dataset folder, one batch of images at a time, keeping
// its state after each batch so that an interrupted run can be continued.
func evalRobust(c *cli.Command, o evalOptions) error {
	eps, names, err := parseRobust(o)
	if err != nil {
		return err
	}
	r, err := loadRobust(c, o, eps, names)
	if err != nil {
		return err
	}
	if err := r.resume(); err != nil {
		return err
	}
	if o.saveAdv != "" {
		if r.saver, err = newAdvSaver(o.saveAdv, names); err != nil {
			return err
		}
	}
	r.printHeader()
	pass, restore, err := passSize(c, r.m, o.maxMemory, r.o.batch, r.m.FixedBatch())
	if err != nil {
		return err
	}
	defer restore()
	r.pass = pass
	// the model is checked on the list's first pass, the same in every shard
	n := min(len(r.headY), r.pass)
	headX := graph.F32(append([]int{n}, r.headX.Shape[1:]...), r.headX.F[:n*graph.Numel(r.headX.Shape[1:])])
	if r.warn, err = attack.Check(r.m, headX, r.headY[:n], names); err != nil {
		return fmt.Errorf("%s: %w", o.model, err)
	}
	for _, w := range r.warn {
		fmt.Fprintf(c.Stdout, "warning: %s\n", w)
	}
	stop := r.watch()
	defer stop()
	start := time.Now()
	if err := r.attackAll(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.finished = true
	return r.finish(time.Since(start))
}

// parseRobust checks the flags that need no file: the radius, the attack
// names, --limit, and the folders --json, --state and --save-adv are in.
func parseRobust(o evalOptions) (float64, []string, error) {
	eps, err := cli.ParseEps(o.eps)
	if err != nil {
		return 0, nil, cli.Usagef("%v", err)
	}
	names := splitList(o.attacks)
	switch o.suite {
	case "":
	case "autoattack":
		names = append(names, "autoattack")
	default:
		return 0, nil, cli.Usagef("--suite %q: the only suite is autoattack", o.suite)
	}
	if len(names) == 0 {
		return 0, nil, cli.Usagef("--attacks: name at least one of %s", attack.Names)
	}
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			return 0, nil, cli.Usagef("--attacks: %q is listed twice", n)
		}
		seen[n] = true
		if n == "clean" {
			continue
		}
		if _, err := attack.Parse(n); err != nil {
			return 0, nil, cli.Usagef("--attacks: %v", err)
		}
	}
	if o.limit < 0 {
		return 0, nil, cli.Usagef("--limit must be 0 (all) or more, got %d", o.limit)
	}
	for _, f := range []struct{ flag, path string }{{"--json", o.json}, {"--state", o.statePath()}} {
		if f.path == "" {
			continue
		}
		if st, err := os.Stat(filepath.Dir(f.path)); err != nil || !st.IsDir() {
			return 0, nil, fmt.Errorf("%s %s: the folder %s does not exist", f.flag, f.path, filepath.Dir(f.path))
		}
		if st, err := os.Stat(f.path); err == nil && st.IsDir() {
			return 0, nil, fmt.Errorf("%s %s: is a folder, want a file", f.flag, f.path)
		}
	}
	return eps, names, nil
}

// loadRobust loads the model and the images, and sets the evaluation up.
func loadRobust(c *cli.Command, o evalOptions, eps float64, names []string) (*robustRun, error) {
	r := &robustRun{c: c, o: o, eps: eps}
	im, err := onnximport.Load(o.model)
	if err != nil {
		return nil, err
	}
	if r.m, err = model.New(im); err != nil {
		return nil, fmt.Errorf("%s: %v", o.model, err)
	}
	// a model exported without a dynamic batch axis runs one batch size only
	switch b := r.m.FixedBatch(); {
	case b > 1:
		return nil, fmt.Errorf("%s: the input %q has a fixed batch of %d (the model was exported without a dynamic batch axis); hyperat-eval --data needs a dynamic batch, or batch 1",
			o.model, im.Graph.Inputs[0].Name, b)
	case b == 1:
		r.o.batch = 1
	}
	sum, err := fileSHA256(o.model)
	if err != nil {
		return nil, err
	}
	ds, err := data.Open(o.data, data.Test)
	if err != nil {
		return nil, err
	}
	sh := r.m.InputShape()
	if err := data.CheckFits(ds, sh[0], sh[1], sh[2], r.m.Classes()); err != nil {
		return nil, err
	}
	view := ds.View(sh[0], sh[1], sh[2])
	sha, err := r.loadImages(view, ds.First(o.limit))
	if err != nil {
		return nil, err
	}
	if r.ev, err = attack.NewEvaluation(names, eps, o.seed, r.m.Classes()); err != nil {
		return nil, fmt.Errorf("%s: %v", o.model, err)
	}
	r.key = stateKey{Version: version.String(), ModelSHA256: sum, ImagesSHA256: sha, Kernels: kernelsVariant(),
		List: r.listN, N: len(r.idx), Eps: eps, Attacks: names, Seed: o.seed, Batch: r.o.batch, SaveAdv: absPath(o.saveAdv)}
	if o.shard != nil {
		r.key.Shard = o.shard.String()
	}
	if s := ds.Conversion(sh[0], sh[1], sh[2]); s != "" {
		r.conv = " (" + s + ")"
	}
	return r, nil
}

// loadImages loads the images the run evaluates (the shard's, with
// --shard) and the list's first batch, and returns imagesSHA256 of the
// whole list.
func (r *robustRun) loadImages(view *data.View, list []int) (string, error) {
	r.idx, r.listN = list, len(list)
	if sh := r.o.shard; sh != nil {
		pos, err := sh.positions(len(list), r.o.batch)
		if err != nil {
			return "", err
		}
		r.idx = make([]int, len(pos))
		for k, p := range pos {
			r.idx[k] = list[p]
		}
	}
	var err error
	if r.x, r.y, err = view.Batch(r.idx); err != nil {
		return "", err
	}
	if r.o.shard == nil {
		n := min(len(r.y), r.o.batch)
		r.headX = graph.F32(append([]int{n}, r.x.Shape[1:]...), r.x.F[:n*graph.Numel(r.x.Shape[1:])])
		r.headY = r.y[:n]
		return imagesSHA256(r.x, r.y, r.idx), nil
	}
	if r.headX, r.headY, err = view.Batch(list[:min(len(list), r.o.batch)]); err != nil {
		return "", err
	}
	return listSHA256(view, list, r.o.batch)
}

func (r *robustRun) printHeader() {
	fmt.Fprintf(r.c.Stdout, "model   %s\ndata    %s: first %d test images%s\n", r.o.model, r.o.data, r.listN, r.conv)
	if sh := r.o.shard; sh != nil {
		fmt.Fprintf(r.c.Stdout, "shard   %d of %d (%s batches of %d): %d images\n", sh.Index, sh.Count, sh.Mode, r.o.batch, len(r.idx))
	}
	fmt.Fprintf(r.c.Stdout, "eps     %.6g\n", r.eps)
	fmt.Fprintf(r.c.Stdout, "attacks %s (seed %d)\n", strings.Join(r.ev.Names(), ", "), r.o.seed)
	if p := r.o.statePath(); p != "" && r.st.Done > 0 {
		fmt.Fprintf(r.c.Stdout, "resume  %d of %d images done before (state %s)\n", r.st.Done, len(r.idx), p)
	}
}

// attackAll runs the evaluation on the images not done yet, one batch at a
// time, and writes the state after each batch.
func (r *robustRun) attackAll() error {
	n, d, units := len(r.idx), graph.Numel(r.x.Shape[1:]), r.ev.Units()
	r.bar = newBar(r.c.Stdout)
	done := r.st.Done * units
	r.bar.base = done
	report := func(k int) {
		done += k
		r.bar.update(done, n*units)
	}
	report(0)
	defer r.bar.done()
	for b := r.st.Done / r.o.batch; b*r.o.batch < n; b++ {
		lo, hi := b*r.o.batch, min((b+1)*r.o.batch, n)
		xb := graph.F32(append([]int{hi - lo}, r.x.Shape[1:]...), r.x.F[lo*d:hi*d])
		recs, advs, err := runPasses(r.ev, r.m, xb, r.y[lo:hi], r.idx[lo:hi], r.pass, report)
		if err != nil {
			return fmt.Errorf("%s: %w", r.o.model, err)
		}
		if r.saver != nil {
			if err := r.saver.save(b, advs); err != nil {
				return err
			}
		}
		r.mu.Lock()
		r.st.Records = append(r.st.Records, recs...)
		r.st.Done = hi
		err = r.writeState()
		r.mu.Unlock()
		if err != nil {
			return err
		}
	}
	return nil
}

// watch turns SIGINT and SIGTERM into one line on stderr and exit status 1,
// once no state is being written: the state of the last batch done stays,
// and the same command continues from it.
func (r *robustRun) watch() (stop func()) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	quit := make(chan struct{})
	go func() {
		select {
		case <-sig:
			r.mu.Lock()
			if r.finished {
				r.mu.Unlock()
				return
			}
			if r.bar != nil {
				r.bar.done()
			}
			msg := fmt.Sprintf("interrupted after %d of %d images; nothing was kept (with --json or --state a run can be continued)", r.st.Done, len(r.idx))
			if p := r.o.statePath(); p != "" {
				msg = fmt.Sprintf("interrupted after %d of %d images; the same command continues from there (state %s)", r.st.Done, len(r.idx), p)
			}
			fmt.Fprintf(r.c.Stderr, "%s: %s\n", r.c.Name, msg)
			os.Exit(cli.ExitError)
		case <-quit:
		}
	}()
	return func() {
		signal.Stop(sig)
		close(quit)
	}
}

// finish prints the table, writes the report and the examples, and removes
// the state.
func (r *robustRun) finish(took time.Duration) error {
	rep := r.report()
	rep.print(r.c.Stdout)
	fmt.Fprintf(r.c.Stdout, "\n%d images in %s\n", len(r.idx), took.Round(time.Second))
	if r.o.json != "" {
		b, err := rep.encode()
		if err != nil {
			return err
		}
		if err := fsx.WriteFile(r.o.json, b); err != nil {
			return err
		}
	}
	if r.saver != nil {
		if err := r.saver.finish(r.x.Shape[1:], r.idx, r.y, (len(r.idx)+r.o.batch-1)/r.o.batch); err != nil {
			return err
		}
	}
	if p := r.o.statePath(); p != "" {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s: %v", p, err)
		}
	}
	return nil
}

// print writes the report's table and the suite's warnings.
func (rep *robustReport) print(w io.Writer) {
	fmt.Fprintf(w, "\n  %-12s %9s\n", "attack", "accuracy")
	for _, n := range rep.Attacks {
		fmt.Fprintf(w, "  %-12s %8.2f%%\n", n, 100*rep.Results[n])
	}
	if s := rep.Suite; s != nil {
		var parts []string
		for _, a := range s.Attacks {
			parts = append(parts, fmt.Sprintf("%s %.2f%%", a, 100*s.RobustAfter[a]))
		}
		fmt.Fprintf(w, "  autoattack, robust after each attack: %s\n", strings.Join(parts, ", "))
	}
	for _, wn := range attack.SuiteWarnings(rep.images) {
		fmt.Fprintf(w, "warning: %s\n", wn)
	}
	if noneRight(rep.images) {
		fmt.Fprintln(w, "note: the model classifies none of these images correctly, so the attacks had nothing to attack")
	}
}

// noneRight reports whether there are images and the model is wrong on every
// one: robust accuracy is then 0 without any attack having run.
func noneRight(recs []attack.Record) bool {
	for _, r := range recs {
		if r.CleanPred == r.Label {
			return false
		}
	}
	return len(recs) > 0
}

// fileSHA256 is the SHA-256 of a file's bytes, in hex.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("%s: %v", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func absPath(p string) string {
	if p == "" {
		return ""
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// encodeLines is JSON with v's fields indented and, under key, one line per
// element of list: a report of thousands of images stays readable.
func encodeLines[T any](v any, key string, list []T) ([]byte, error) {
	head, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	b.Write(bytes.TrimSuffix(head, []byte("\n}")))
	fmt.Fprintf(&b, ",\n  %q: [", key)
	for i, e := range list {
		line, err := json.Marshal(e)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString("\n    ")
		b.Write(line)
	}
	if len(list) > 0 {
		b.WriteString("\n  ")
	}
	b.WriteString("]\n}\n")
	return b.Bytes(), nil
}

// bar is a progress bar on a terminal, and occasional plain lines elsewhere.
type bar struct {
	w     io.Writer
	tty   bool
	start time.Time
	last  time.Time
	base  int // work done before start (a resumed run), left out of the time estimate
}

func newBar(w io.Writer) *bar {
	b := &bar{w: w, start: time.Now()}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			b.tty = true
		}
	}
	return b
}

func (b *bar) update(done, total int) {
	if total <= 0 {
		return
	}
	frac := float64(done) / float64(total)
	el := time.Since(b.start)
	left := time.Duration(0)
	if now := done - b.base; now > 0 {
		left = time.Duration(float64(el) * float64(total-done) / float64(now))
	}
	if b.tty {
		const width = 30
		fill := int(frac * width)
		fmt.Fprintf(b.w, "\r[%s%s] %5.1f%%  %s left ", strings.Repeat("#", fill), strings.Repeat(".", width-fill), 100*frac, left.Round(time.Second))
		return
	}
	if time.Since(b.last) > 15*time.Second || done == total {
		fmt.Fprintf(b.w, "progress %5.1f%%, %s left\n", 100*frac, left.Round(time.Second))
		b.last = time.Now()
	}
}

func (b *bar) done() {
	if b.tty {
		fmt.Fprintln(b.w)
	}
}
