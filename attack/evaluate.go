package attack

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/hyperat/hyperat/graph"
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
// Samples go through the model in batches of at most batch. Sample i draws
// its random numbers from its own stream of seed (Seeds with IDs 0..N-1), so
// the random choices do not depend on batch. progress, when not nil, is called as work
// finishes with done and total counted in samples per attack (AutoAttack
// counts its four attacks, each over the samples it runs on).
func Evaluate(m Model, x *graph.Tensor, y []int, eps float64, attacks []string, batch int, seed uint64, progress func(done, total int)) (map[string]float64, error) {
	if err := check(m, x, y, eps, Seeds{}); err != nil {
		return nil, err
	}
	if batch < 1 {
		return nil, fmt.Errorf("batch must be at least 1, got %d", batch)
	}
	parsed, units, err := parseAll(attacks, x.Shape[0], m.Classes())
	if err != nil {
		return nil, err
	}
	n := x.Shape[0]
	done := 0
	report := func(k int) {
		done += k
		if progress != nil {
			progress(done, units)
		}
	}
	report(0)
	seeds := Seeds{Seed: seed, IDs: make([]uint64, n)}
	for i := range seeds.IDs {
		seeds.IDs[i] = uint64(i)
	}
	acc := map[string]float64{}
	for k, name := range attacks {
		var correct int
		if aa, ok := parsed[k].(AutoAttack); ok {
			correct, err = runSuite(aa, m, x, y, eps, batch, seeds, report)
		} else {
			correct, err = Correct(m, x, y, eps, parsed[k], batch, seeds, report)
		}
		if err != nil {
			return nil, err
		}
		acc[name] = float64(correct) / float64(n)
	}
	return acc, nil
}

// parseAll parses the attack names (nil for "clean") and counts the units
// of work Evaluate reports: n samples per attack, and per attack of a suite.
func parseAll(attacks []string, n, classes int) ([]Attack, int, error) {
	if len(attacks) == 0 {
		return nil, 0, errors.New("no attacks to run")
	}
	parsed := make([]Attack, len(attacks))
	seen := map[string]bool{}
	units := 0
	for k, name := range attacks {
		if seen[name] {
			return nil, 0, fmt.Errorf("attack %q is listed twice", name)
		}
		seen[name] = true
		units += n
		if name == "clean" {
			continue
		}
		a, err := Parse(name)
		if err != nil {
			return nil, 0, err
		}
		if aa, ok := a.(AutoAttack); ok {
			units += n * (len(aa.Attacks) - 1)
		}
		if err := supports(a, classes); err != nil {
			return nil, 0, err
		}
		parsed[k] = a
	}
	return parsed, units, nil
}

// Correct counts the samples of x that m classifies right: on x itself when
// a is nil, under the attack a otherwise (right on x and on a's example).
// The samples go through the attack in batches of at most batch, sample i
// drawing from the stream s names for it (IDs nil: its index), so the count
// does not depend on batch. report, when not nil, gets the size of each
// batch done. Evaluate counts every attack but the suite with it, and so
// does the validation of a tuning run.
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

// runSuite runs AutoAttack on all of x (it re-batches the samples still
// robust before each attack) and reports its progress in samples per attack.
func runSuite(aa AutoAttack, m Model, x *graph.Tensor, y []int, eps float64, batch int, s Seeds, report func(int)) (int, error) {
	n := x.Shape[0]
	aa.Batch = batch
	last := make([]int, len(aa.Attacks)) // reported so far, per attack
	aa.Progress = func(at, done, total int) {
		u := done + n - total // the samples fooled before it count as done
		report(u - last[at])
		last[at] = u
	}
	res, err := aa.Run(m, x, y, eps, s)
	if err != nil {
		return 0, err
	}
	// attacks left with no sample to run on
	for at := range aa.Attacks {
		report(n - last[at])
	}
	return res.Robust(), nil
}

// supports checks that the model has the classes an attack needs.
func supports(a Attack, classes int) error {
	switch a := a.(type) {
	case APGD:
		if a.Targeted && classes < 4 {
			return fmt.Errorf("%s needs at least 4 classes (targeted DLR loss), the model has %d", a.Name(), classes)
		}
	case AutoAttack:
		for _, s := range a.Attacks {
			if err := supports(s, classes); err != nil {
				return fmt.Errorf("autoattack: %w", err)
			}
		}
	}
	return nil
}
