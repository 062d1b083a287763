package attack

import (
	"fmt"
	"math"
	"slices"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/loss"
)

// The thresholds of AutoAttack's checks (checks.py).
const (
	// checkRuns is how often check_randomized runs the model on a batch.
	checkRuns = 5
	// randomizedTol bounds the L2 distance between two runs' logits, each
	// row scaled to unit L2 norm, of a deterministic model.
	randomizedTol = 1e-4
	// probTol is check_range_output's alpha: outputs within [-tol, 1 + tol]
	// whose rows sum to 1 within tol look like probabilities.
	probTol = 1e-5
	// squareTol is check_square_sr's alpha: Square lowering the robust
	// accuracy the other attacks of the suite left by more than this
	// fraction of the images is suspicious.
	squareTol = 0.002
)

// Check runs AutoAttack's checks of a classifier (its checks.py) on a batch
// of images x with labels y before an evaluation with the attacks names, and
// returns a warning for each that fails, in words that say what the
// evaluation will do about it:
//
//   - randomized: the model runs 5 times on x; the number of images it gets
//     right changes, or two runs' logits (each row scaled to unit L2 norm)
//     differ by more than 1e-4 in L2 norm (check_randomized);
//   - probabilities: every output lies in [-1e-5, 1 + 1e-5] and every row
//     sums to 1 within 1e-5: the model seems to end in a softmax, and the
//     attacks want logits (check_range_output);
//   - classes: apgd-t (alone or in the suite) needs 4 classes for the
//     targeted DLR loss, and apgd-t and fab-t attack 9 target classes, more
//     than a model with fewer than 10 classes has (check_n_classes).
//
// AutoAttack's check_dynamic (a model that computes gradients while it
// classifies) has no counterpart: an ONNX graph runs no optimization of its
// own. check_zero_gradients and check_square_sr need the attacks' results;
// SuiteWarnings gives the latter.
func Check(m Model, x *graph.Tensor, y []int, names []string) ([]string, error) {
	if err := check(m, x, y, 1, Seeds{}); err != nil {
		return nil, err
	}
	r := newRunner(m, x)
	n, c := x.Shape[0], r.classes
	var runs [][]float32
	for range checkRuns {
		l, err := r.logits(x.F, n)
		if err != nil {
			return nil, err
		}
		runs = append(runs, slices.Clone(l))
	}
	var warn []string
	if w := randomized(runs, n, c, y); w != "" {
		warn = append(warn, w)
	}
	if looksLikeProbabilities(runs[0], n, c) {
		warn = append(warn, "the model's outputs look like probabilities (all in [0, 1], every row summing to 1), not logits: "+
			"the attacks' losses want the logits (export the model without its final softmax); "+
			"AutoAttack's check_range_output warns the same")
	}
	return append(warn, classWarnings(names, c)...), nil
}

// randomized says why runs (the model's logits on the same n images, c
// classes each) look like those of a randomized model, or "".
func randomized(runs [][]float32, n, c int, y []int) string {
	right := func(l []float32) int {
		k := 0
		for i := range n {
			if loss.Argmax(l[i*c:(i+1)*c]) == y[i] {
				k++
			}
		}
		return k
	}
	unit := func(l []float32, i int) []float64 {
		row := make([]float64, c)
		s := 0.0
		for j, v := range l[i*c : (i+1)*c] {
			row[j] = float64(v)
			s += row[j] * row[j]
		}
		s = math.Sqrt(s) + 1e-10
		for j := range row {
			row[j] /= s
		}
		return row
	}
	worst := 0.0
	for a := range runs {
		for b := a + 1; b < len(runs); b++ {
			for i := range n {
				ua, ub := unit(runs[a], i), unit(runs[b], i)
				d := 0.0
				for j := range ua {
					d += (ua[j] - ub[j]) * (ua[j] - ub[j])
				}
				worst = max(worst, math.Sqrt(d))
			}
		}
	}
	counts := map[int]bool{}
	for _, l := range runs {
		counts[right(l)] = true
	}
	if len(counts) == 1 && !(worst > randomizedTol) {
		return ""
	}
	return fmt.Sprintf("the model seems randomized: %d runs on the same %d images differ (logits up to %.3g apart, scaled to unit norm; %d different counts of images right): "+
		"the attacks assume a deterministic model, and their accuracies do not hold for a randomized defense (AutoAttack's check_randomized warns the same; it evaluates such models with its rand version, with EOT)",
		len(runs), n, worst, len(counts))
}

// looksLikeProbabilities is AutoAttack's check_range_output on the logits l
// of n images with c classes.
func looksLikeProbabilities(l []float32, n, c int) bool {
	for i := range n {
		s := 0.0
		for _, v := range l[i*c : (i+1)*c] {
			if !(float64(v) < 1+probTol && float64(v) > -probTol) {
				return false
			}
			s += float64(v)
		}
		if !(math.Abs(s-1) < probTol) {
			return false
		}
	}
	return true
}

// classWarnings is AutoAttack's check_n_classes for the attacks names on a
// model with c classes, with what the evaluation does instead.
func classWarnings(names []string, c int) []string {
	suite := slices.Contains(names, "autoattack")
	apgdT := suite || slices.Contains(names, "apgd-t")
	fabT := suite || slices.Contains(names, "fab-t")
	targets := NewAPGDT().Targets
	var warn []string
	if apgdT && c < loss.DLRTargetedMinClasses {
		what := "apgd-t cannot run"
		if suite {
			what = "the autoattack suite leaves apgd-t out"
		}
		warn = append(warn, fmt.Sprintf("with only %d classes the targeted DLR loss cannot be used (it needs %d): %s (AutoAttack's check_n_classes warns the same)",
			c, loss.DLRTargetedMinClasses, what))
	}
	var short []string
	if apgdT && c >= loss.DLRTargetedMinClasses && targets+1 > c {
		short = append(short, "apgd-t")
	}
	if fabT && NewFABT().Targets+1 > c {
		short = append(short, "fab-t")
	}
	if len(short) > 0 {
		warn = append(warn, fmt.Sprintf("%s attack %d target classes, but the model has only %d classes besides the true one: they attack those %d (AutoAttack's check_n_classes warns here, and its attacks fail)",
			joinAnd(short), targets, c-1, c-1))
	}
	return warn
}

// SuiteWarnings is AutoAttack's check_square_sr on the records of an
// evaluation with the autoattack suite: a warning when Square, the suite's
// last and only score-based attack, fooled more than 0.2% of the images
// that the gradient-based attacks before it left robust.
func SuiteWarnings(recs []Record) []string {
	sq := 0
	for _, r := range recs {
		if r.FooledBy == "square" {
			sq++
		}
	}
	if len(recs) == 0 || !(float64(sq)/float64(len(recs)) > squareTol) {
		return nil
	}
	return []string{fmt.Sprintf("Square fooled %d images (%.2f%% of the %d) that the gradient-based attacks of the suite left robust: "+
		"this hints that the gradients of the model mislead the attacks and that its robustness is overestimated; consider Square with more queries and restarts, or an adaptive attack "+
		"(AutoAttack's check_square_sr warns the same)", sq, 100*float64(sq)/float64(len(recs)), len(recs))}
}

func joinAnd(s []string) string {
	switch len(s) {
	case 1:
		return s[0]
	case 2:
		return s[0] + " and " + s[1]
	}
	return fmt.Sprint(s)
}
