package attack

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/loss"
)

// Names lists the attack names Parse and Evaluate know; K in pgd-K and cw-K
// is any step count from 1.
const Names = "clean, fgsm, pgd-K, cw-K, apgd-ce, apgd-t, fab-t, square, autoattack"

// Parse returns the attack called name with the settings of the project's
// evaluation (METHOD.md): fgsm; pgd-K (K steps on the cross-entropy from a
// uniform random start, step 2.5 eps / K); cw-K (the same on the margin
// loss); apgd-ce, apgd-t, fab-t and square with AutoAttack's standard
// settings; autoattack for the standard suite of the last four. "clean" is
// not an attack: Evaluate handles it.
func Parse(name string) (Attack, error) {
	switch name {
	case "fgsm":
		return FGSM{}, nil
	case "apgd-ce":
		return NewAPGDCE(), nil
	case "apgd-t":
		return NewAPGDT(), nil
	case "fab-t":
		return NewFABT(), nil
	case "square":
		return NewSquare(), nil
	case "autoattack":
		return NewAutoAttack(), nil
	}
	for _, p := range []string{"pgd", "cw"} {
		rest, ok := strings.CutPrefix(name, p+"-")
		if !ok {
			if name == p {
				return nil, fmt.Errorf("attack %q needs a step count, e.g. %s-20", name, p)
			}
			continue
		}
		k, err := strconv.Atoi(rest)
		if err != nil || k < 1 || strconv.Itoa(k) != rest {
			return nil, fmt.Errorf("attack %q: the step count after %q must be a whole number from 1, got %q", name, p+"-", rest)
		}
		return PGD{Steps: k, Margin: p == "cw"}, nil
	}
	return nil, fmt.Errorf("unknown attack %q (known: %s)", name, Names)
}

// Evaluate measures the accuracy of m on the images x ([N, C, H, W], pixels
// in [0, 1]) with labels y under each named attack at L-infinity radius eps,
// and returns the accuracies (fractions of N) under the names as given.
// "clean" is the accuracy on x itself; under an attack a sample counts as
// correct only if the model is right on x and on the attack's example.
// It is an Evaluation run on batches of at most batch samples, sample i
// named by its index i (its random streams, Seeds with IDs 0..N-1), so the
// result does not depend on batch. progress, when not nil, is called as work
// finishes with done and total counted in samples per attack (AutoAttack
// counts its four attacks, each over the samples it runs on).
func Evaluate(m Model, x *graph.Tensor, y []int, eps float64, attacks []string, batch int, seed uint64, progress func(done, total int)) (map[string]float64, error) {
	if err := check(m, x, y, eps, Seeds{}); err != nil {
		return nil, err
	}
	if batch < 1 {
		return nil, fmt.Errorf("batch must be at least 1, got %d", batch)
	}
	e, err := NewEvaluation(attacks, eps, seed, m.Classes())
	if err != nil {
		return nil, err
	}
	n, d := x.Shape[0], graph.Numel(x.Shape[1:])
	done, total := 0, n*e.Units()
	report := func(k int) {
		done += k
		if progress != nil {
			progress(done, total)
		}
	}
	report(0)
	correct := make([]int, len(attacks))
	for lo := 0; lo < n; lo += batch {
		hi := min(lo+batch, n)
		ids := make([]int, hi-lo)
		for k := range ids {
			ids[k] = lo + k
		}
		xb := graph.F32(append([]int{hi - lo}, x.Shape[1:]...), x.F[lo*d:hi*d])
		recs, _, err := e.Run(m, xb, y[lo:hi], ids, report)
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			for k, name := range attacks {
				if r.Robust[name] {
					correct[k]++
				}
			}
		}
	}
	acc := map[string]float64{}
	for k, name := range attacks {
		acc[name] = float64(correct[k]) / float64(n)
	}
	return acc, nil
}

// Record is what an Evaluation found for one image. Images are named by
// their index in the dataset, which also names their random streams, so a
// record does not depend on the batch it was in nor on the other images:
// records of one evaluation made in separate runs (resumed, or split over
// machines) can be put together.
type Record struct {
	// Index is the image's index in the dataset.
	Index int `json:"index"`
	// Label is its true class, CleanPred the class the model gives it.
	Label     int `json:"label"`
	CleanPred int `json:"clean_pred"`
	// Robust says, under each name of the evaluation ("clean" included),
	// whether the model is right on the image and on the attack's example.
	Robust map[string]bool `json:"robust"`
	// AdvPred is, per attack, the class the model gives the attack's
	// example (the image itself where the attack returns it).
	AdvPred map[string]int `json:"adv_pred,omitempty"`
	// FooledBy names, for the autoattack suite, the attack of the suite
	// that fooled the image first ("" when the suite did not run, the image
	// was misclassified to begin with, or it stayed robust).
	FooledBy string `json:"fooled_by,omitempty"`
}

// Evaluation is a list of attacks ("clean" among them, or not) at one radius
// and seed, run on batches of images named by their index in a dataset.
type Evaluation struct {
	names   []string
	attacks []Attack // nil for "clean"
	eps     float64
	seed    uint64
	units   int // progress units per image
}

// NewEvaluation parses the attack names (Parse's, and "clean") for a model
// with the given number of classes; it refuses an empty list, a name given
// twice, a radius outside (0, 1] and an attack the model has too few
// classes for (apgd-t below 4; the autoattack suite leaves it out instead).
func NewEvaluation(names []string, eps float64, seed uint64, classes int) (*Evaluation, error) {
	if !(eps > 0 && eps <= 1) {
		return nil, fmt.Errorf("eps must be in (0, 1] (pixels are in [0, 1]), got %v", eps)
	}
	if len(names) == 0 {
		return nil, errors.New("no attacks to run")
	}
	e := &Evaluation{names: slices.Clone(names), attacks: make([]Attack, len(names)), eps: eps, seed: seed}
	seen := map[string]bool{}
	for k, name := range names {
		if seen[name] {
			return nil, fmt.Errorf("attack %q is listed twice", name)
		}
		seen[name] = true
		e.units++
		if name == "clean" {
			continue
		}
		a, err := Parse(name)
		if err != nil {
			return nil, err
		}
		if aa, ok := a.(AutoAttack); ok {
			e.units += len(aa.Attacks) - 1
		} else if err := supports(a, classes); err != nil {
			return nil, err
		}
		e.attacks[k] = a
	}
	return e, nil
}

// Names is the evaluation's list of names, as given.
func (e *Evaluation) Names() []string { return slices.Clone(e.names) }

// Units is how many units of progress one image counts for: one per name,
// and one more per attack of a suite after its first.
func (e *Evaluation) Units() int { return e.units }

// Run evaluates the images x (labels y, dataset indices ids, which name the
// images' random streams) and returns one record per image and, per name,
// the attacks' examples [N, C, H, W] (nil for "clean"). report, when not
// nil, gets units of progress as they are done (Units per image in all).
func (e *Evaluation) Run(m Model, x *graph.Tensor, y []int, ids []int, report func(units int)) ([]Record, []*graph.Tensor, error) {
	s := Seeds{Seed: e.seed, IDs: make([]uint64, len(ids))}
	for k, id := range ids {
		if id < 0 {
			return nil, nil, fmt.Errorf("image index %d is negative", id)
		}
		s.IDs[k] = uint64(id)
	}
	if err := check(m, x, y, e.eps, s); err != nil {
		return nil, nil, err
	}
	if report == nil {
		report = func(int) {}
	}
	n := x.Shape[0]
	m = &cleanMemo{Model: m}
	pred, err := cleanClasses(m, x, n)
	if err != nil {
		return nil, nil, err
	}
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{Index: ids[i], Label: y[i], CleanPred: pred[i], Robust: map[string]bool{}}
	}
	advs := make([]*graph.Tensor, len(e.names))
	for k, name := range e.names {
		a := e.attacks[k]
		if a == nil {
			for i := range recs {
				recs[i].Robust[name] = pred[i] == y[i]
			}
			report(n)
			continue
		}
		res, err := e.runOne(a, m, x, y, s, report)
		if err != nil {
			return nil, nil, err
		}
		for i := range recs {
			recs[i].Robust[name] = !res.Fooled[i]
			if recs[i].AdvPred == nil {
				recs[i].AdvPred = map[string]int{}
			}
			recs[i].AdvPred[name] = res.Pred[i]
			if res.By != nil {
				recs[i].FooledBy = res.By[i]
			}
		}
		advs[k] = res.Adv
	}
	return recs, advs, nil
}

// runOne runs one attack on the batch, reporting its progress: a suite after
// each of its attacks (the samples fooled before an attack count as done
// for it), any other attack when it is done.
func (e *Evaluation) runOne(a Attack, m Model, x *graph.Tensor, y []int, s Seeds, report func(int)) (*Result, error) {
	n := x.Shape[0]
	aa, ok := a.(AutoAttack)
	if !ok {
		res, err := a.Run(m, x, y, e.eps, s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", a.Name(), err)
		}
		report(n)
		return res, nil
	}
	last := make([]int, len(aa.Attacks)) // reported so far, per attack
	aa.Progress = func(at, done, total int) {
		u := done + n - total
		report(u - last[at])
		last[at] = u
	}
	res, err := aa.Run(m, x, y, e.eps, s)
	if err != nil {
		return nil, err
	}
	for at := range aa.Attacks { // attacks left with no sample to run on
		report(n - last[at])
	}
	return res, nil
}

// Correct counts the samples of x that m classifies right: on x itself when
// a is nil, under the attack a otherwise (right on x and on a's example).
// The samples go through the attack in batches of at most batch, sample i
// drawing from the stream s names for it (IDs nil: its index), so the count
// does not depend on batch. report, when not nil, gets the size of each
// batch done. It counts what Evaluate counts with the same batch (the
// validation of a tuning run counts with it).
func Correct(m Model, x *graph.Tensor, y []int, eps float64, a Attack, batch int, s Seeds, report func(int)) (int, error) {
	if err := check(m, x, y, eps, s); err != nil {
		return 0, err
	}
	if batch < 1 {
		return 0, fmt.Errorf("batch must be at least 1, got %d", batch)
	}
	n, d := x.Shape[0], graph.Numel(x.Shape[1:])
	correct := 0
	for lo := 0; lo < n; lo += batch {
		hi := min(lo+batch, n)
		xb := graph.F32(append([]int{hi - lo}, x.Shape[1:]...), x.F[lo*d:hi*d])
		idx := make([]int, hi-lo)
		for k := range idx {
			idx[k] = lo + k
		}
		if a == nil {
			ok, err := cleanRight(m, xb, y[lo:hi], hi-lo)
			if err != nil {
				return 0, err
			}
			for _, v := range ok {
				if v {
					correct++
				}
			}
		} else {
			res, err := a.Run(m, xb, y[lo:hi], eps, s.sub(idx))
			if err != nil {
				return 0, fmt.Errorf("%s: %w", a.Name(), err)
			}
			correct += res.Robust()
		}
		if report != nil {
			report(hi - lo)
		}
	}
	return correct, nil
}

// supports checks that the model has the classes an attack needs.
func supports(a Attack, classes int) error {
	if a, ok := a.(APGD); ok && a.Targeted && classes < loss.DLRTargetedMinClasses {
		return fmt.Errorf("%s needs at least %d classes (targeted DLR loss), the model has %d", a.Name(), loss.DLRTargetedMinClasses, classes)
	}
	return nil
}

// cleanMemo is a model that remembers its first forward pass: Run's
// classification of the clean batch. Every attack begins by classifying that
// same batch again (to attack only what the model gets right); the engine's
// forward is deterministic, so the remembered logits are the ones a second
// pass would give, and an evaluation of clean and pgd-K runs one clean
// forward instead of two. Inputs are compared bit for bit.
type cleanMemo struct {
	Model
	x, logits *graph.Tensor
}

func (c *cleanMemo) Logits(x *graph.Tensor) (*graph.Tensor, error) {
	if c.x != nil && sameBits(c.x, x) {
		return c.logits.Clone(), nil
	}
	l, err := c.Model.Logits(x)
	if err != nil || c.x != nil || l == nil {
		return l, err
	}
	c.x, c.logits = x.Clone(), l.Clone()
	return l, nil
}

// sameBits says whether a and b are float32 tensors of one shape and the
// same bits.
func sameBits(a, b *graph.Tensor) bool {
	if a.DType != b.DType || a.DType != graph.Float32 || !slices.Equal(a.Shape, b.Shape) || len(a.F) != len(b.F) {
		return false
	}
	for i, v := range a.F {
		if math.Float32bits(v) != math.Float32bits(b.F[i]) {
			return false
		}
	}
	return true
}
