package app

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hyperat/hyperat/attack"
	"github.com/hyperat/hyperat/data"
	"github.com/hyperat/hyperat/fsx"
	onnximport "github.com/hyperat/hyperat/import"
	"github.com/hyperat/hyperat/internal/cli"
	"github.com/hyperat/hyperat/model"
)

// robustReport is the --json file of a robustness evaluation.
type robustReport struct {
	Model   string             `json:"model"`
	Data    string             `json:"data"`
	Eps     float64            `json:"eps"`
	N       int                `json:"n"`
	Seed    uint64             `json:"seed"`
	Results map[string]float64 `json:"results"`
}

// evalRobust measures clean and adversarial accuracy of a classifier on the
// test split of a dataset folder.
func evalRobust(c *cli.Command, modelPath, dataPath, epsS, attacksS, suite string, limit, batch int, seed uint64, jsonPath string) error {
	eps, err := cli.ParseEps(epsS)
	if err != nil {
		return cli.Usagef("%v", err)
	}
	names := splitList(attacksS)
	switch suite {
	case "":
	case "autoattack":
		names = append(names, "autoattack")
	default:
		return cli.Usagef("--suite %q: the only suite is autoattack", suite)
	}
	if len(names) == 0 {
		return cli.Usagef("--attacks: name at least one of %s", attack.Names)
	}
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			return cli.Usagef("--attacks: %q is listed twice", n)
		}
		seen[n] = true
		if n == "clean" {
			continue
		}
		if _, err := attack.Parse(n); err != nil {
			return cli.Usagef("--attacks: %v", err)
		}
	}
	if limit < 0 {
		return cli.Usagef("--limit must be 0 (all) or more, got %d", limit)
	}
	im, err := onnximport.Load(modelPath)
	if err != nil {
		return err
	}
	m, err := model.New(im)
	if err != nil {
		return fmt.Errorf("%s: %v", modelPath, err)
	}
	// a model exported without a dynamic batch axis runs one batch size only
	switch b := m.FixedBatch(); {
	case b > 1:
		return fmt.Errorf("%s: the input %q has a fixed batch of %d (the model was exported without a dynamic batch axis); hyperat-eval --data needs a dynamic batch, or batch 1",
			modelPath, im.Graph.Inputs[0].Name, b)
	case b == 1:
		batch = 1
	}
	ds, err := data.Open(dataPath, data.Test)
	if err != nil {
		return err
	}
	sh := m.InputShape()
	if err := data.CheckFits(ds, sh[0], sh[1], sh[2], m.Classes()); err != nil {
		return err
	}
	idx := ds.First(limit)
	x, y, err := ds.View(sh[0], sh[1], sh[2]).Batch(idx)
	if err != nil {
		return err
	}
	conv := ""
	if s := ds.Conversion(sh[0], sh[1], sh[2]); s != "" {
		conv = " (" + s + ")"
	}
	fmt.Fprintf(c.Stdout, "model   %s\ndata    %s: first %d test images%s\neps     %.6g\n", modelPath, dataPath, len(idx), conv, eps)
	bar := newBar(c.Stdout)
	start := time.Now()
	res, err := attack.Evaluate(m, x, y, eps, names, batch, seed, bar.update)
	bar.done()
	if err != nil {
		return err
	}
	fmt.Fprintf(c.Stdout, "\n  %-12s %9s\n", "attack", "accuracy")
	for _, n := range names {
		fmt.Fprintf(c.Stdout, "  %-12s %8.2f%%\n", n, 100*res[n])
	}
	fmt.Fprintf(c.Stdout, "\n%d images in %s\n", len(idx), time.Since(start).Round(time.Second))
	if jsonPath == "" {
		return nil
	}
	b, err := json.MarshalIndent(robustReport{Model: filepath.Base(modelPath), Data: dataPath, Eps: eps, N: len(idx), Seed: seed, Results: res}, "", "  ")
	if err != nil {
		return err
	}
	return fsx.WriteFile(jsonPath, append(b, '\n'))
}

// bar is a progress bar on a terminal, and occasional plain lines elsewhere.
type bar struct {
	w     io.Writer
	tty   bool
	start time.Time
	last  time.Time
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
	if frac > 0 {
		left = time.Duration(float64(el) * (1 - frac) / frac)
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
