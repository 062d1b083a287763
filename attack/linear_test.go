package attack

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/loss"
)

// allAttacks is every attack with its standard settings.
func allAttacks() []Attack {
	return []Attack{FGSM{}, PGD{Steps: 20}, PGD{Steps: 20, Margin: true}, NewAPGDCE(), NewAPGDT(), NewFABT(), NewSquare(), NewAutoAttack()}
}

// linearCase is a batch for a linear model, labelled with its predictions.
func linearCase(rng *rand.Rand, l *linear, n int) (*graph.Tensor, []int) {
	x := graph.NewTensor(graph.Float32, append([]int{n}, l.shape...))
	for i := range x.F {
		x.F[i] = rng.Float32()
	}
	return x, predictedLinear(l, x)
}

func predictedLinear(l *linear, x *graph.Tensor) []int {
	z := l.logits(x)
	k := len(l.w)
	y := make([]int, x.Shape[0])
	for i := range y {
		y[i] = loss.Argmax(z.F[i*k : (i+1)*k])
	}
	return y
}

// TestLinearTwoClasses checks every attack against the exact answer on a
// linear model where only two classes can win: the smallest margin over the
// ball and the box is known in closed form, its minimizer is the corner
// x + eps sign(w_other - w_y) clipped to [0, 1], and a signed-gradient step
// goes straight there. No attack may fool a sample whose smallest margin is
// positive; the gradient attacks must fool every sample whose smallest margin
// is negative, Square (a random search) those clearly so.
func TestLinearTwoClasses(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	l := newLinear(rng, 10, []int{1, 8, 8})
	for k := 2; k < 10; k++ {
		l.b[k] = -100 // classes 2..9 never win within eps 0.1
	}
	x, y := linearCase(rng, l, 24)
	const eps = 0.1
	d := graph.Numel(l.shape)
	worst := make([]float64, len(y))
	scale := make([]float64, len(y)) // what the ball can change the margin by
	nFool := 0
	for i := range y {
		xi := x.F[i*d : (i+1)*d]
		if y[i] > 1 {
			t.Fatalf("sample %d predicted as class %d", i, y[i])
		}
		worst[i], _ = l.worst(xi, y[i], eps)
		clean := l.minMargin(xi, y[i], 1-y[i], 0)
		scale[i] = clean - worst[i]
		if worst[i] < 0 {
			nFool++
		}
	}
	if nFool < 4 || nFool > len(y)-4 {
		t.Fatalf("the case has %d foolable samples of %d; want a mix", nFool, len(y))
	}
	for _, a := range allAttacks() {
		res, err := a.Run(l, x, y, eps, Seeds{Seed: 3})
		if err != nil {
			t.Fatalf("%s: %v", a.Name(), err)
		}
		checkResult(t, a.Name(), l, x, y, eps, res)
		slack := 1e-4
		if a.Name() == "square" {
			slack = 0.5
		}
		for i := range y {
			switch {
			case worst[i] > 1e-4 && res.Fooled[i]:
				t.Errorf("%s fooled sample %d, whose smallest margin in the ball is %.4f > 0", a.Name(), i, worst[i])
			case worst[i] < -slack*scale[i] && !res.Fooled[i]:
				t.Errorf("%s missed sample %d, whose smallest margin in the ball is %.4f (of %.4f)", a.Name(), i, worst[i], scale[i])
			}
		}
		t.Logf("%s fooled %d of the %d foolable samples", a.Name(), len(y)-res.Robust(), nFool)
		again, err := a.Run(l, x, y, eps, Seeds{Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		sameResult(t, a.Name(), res, again)
	}
}

// TestLinearManyClasses checks on a linear model with ten live classes that
// no attack fools a sample that cannot be fooled (exactly known), and that
// the targeted attacks, which try every other class, fool the samples that
// can clearly be fooled.
func TestLinearManyClasses(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	l := newLinear(rng, 10, []int{1, 6, 6})
	for k := range l.b {
		l.b[k] *= 3
	}
	x, y := linearCase(rng, l, 24)
	const eps = 0.05
	d := graph.Numel(l.shape)
	worst := make([]float64, len(y))
	nFool := 0
	for i := range y {
		worst[i], _ = l.worst(x.F[i*d:(i+1)*d], y[i], eps)
		if worst[i] < 0 {
			nFool++
		}
	}
	if nFool < 4 || nFool > len(y)-4 {
		t.Fatalf("the case has %d foolable samples of %d; want a mix", nFool, len(y))
	}
	for _, a := range allAttacks() {
		res, err := a.Run(l, x, y, eps, Seeds{Seed: 5})
		if err != nil {
			t.Fatalf("%s: %v", a.Name(), err)
		}
		checkResult(t, a.Name(), l, x, y, eps, res)
		t.Logf("%s fooled %d of the %d foolable samples", a.Name(), len(y)-res.Robust(), nFool)
		must := map[string]bool{"apgd-t": true, "fab-t": true, "autoattack": true}[a.Name()]
		for i := range y {
			switch {
			case worst[i] > 1e-4 && res.Fooled[i]:
				t.Errorf("%s fooled sample %d, whose smallest margin in the ball is %.4f > 0", a.Name(), i, worst[i])
			case must && worst[i] < -0.5 && !res.Fooled[i]:
				t.Errorf("%s missed sample %d, whose smallest margin in the ball is %.4f", a.Name(), i, worst[i])
			}
		}
	}
}

// TestAutoAttackIsWorstCase checks that the suite fools exactly the samples
// some of its attacks fools when run alone with the same seeds (each sample
// has its own random streams, so it meets the same attacks either way), and
// that Evaluate's numbers do not depend on the batch size.
func TestAutoAttackIsWorstCase(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	l := newLinear(rng, 10, []int{1, 6, 6})
	x, y := linearCase(rng, l, 20)
	y[3] = (y[3] + 1) % 10 // one sample misclassified to begin with
	const eps = 0.015
	aa := NewAutoAttack()
	aa.Batch = 7
	suite, err := aa.Run(l, x, y, eps, Seeds{Seed: 11})
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, "autoattack", l, x, y, eps, suite)
	union := make([]bool, len(y))
	for _, a := range aa.Attacks {
		res, err := a.Run(l, x, y, eps, Seeds{Seed: 11})
		if err != nil {
			t.Fatal(err)
		}
		for i, f := range res.Fooled {
			union[i] = union[i] || f
		}
	}
	for i := range y {
		if union[i] != suite.Fooled[i] {
			t.Errorf("sample %d: fooled by some attack alone: %v, by the suite: %v", i, union[i], suite.Fooled[i])
		}
	}
	if !suite.Fooled[3] {
		t.Error("the misclassified sample is reported robust")
	}
	names := []string{"clean", "fgsm", "pgd-7", "cw-5", "apgd-ce", "apgd-t", "fab-t", "square", "autoattack"}
	var first map[string]float64
	for _, batch := range []int{20, 6, 1} {
		last, total := -1, 0
		acc, err := Evaluate(l, x, y, eps, names, batch, 11, func(done, tot int) {
			if done < last || done > tot {
				t.Errorf("batch %d: progress %d/%d after %d", batch, done, tot, last)
			}
			last, total = done, tot
		})
		if err != nil {
			t.Fatal(err)
		}
		if last != total || total != len(y)*(len(names)+3) {
			t.Errorf("batch %d: progress ended at %d/%d, want %d", batch, last, total, len(y)*(len(names)+3))
		}
		if len(acc) != len(names) {
			t.Errorf("batch %d: %d results for %d names", batch, len(acc), len(names))
		}
		if want := float64(suite.Robust()) / float64(len(y)); acc["autoattack"] != want {
			t.Errorf("batch %d: autoattack accuracy %v, the suite run alone gives %v", batch, acc["autoattack"], want)
		}
		for _, n := range names {
			if acc[n] > acc["clean"] {
				t.Errorf("batch %d: accuracy under %s %v is above the clean %v", batch, n, acc[n], acc["clean"])
			}
			if acc[n] < acc["autoattack"] && n != "autoattack" {
				t.Errorf("batch %d: %s (%v) is stronger than the suite (%v)", batch, n, acc[n], acc["autoattack"])
			}
		}
		if first == nil {
			first = acc
			t.Logf("accuracies: %v", acc)
			continue
		}
		for _, n := range names {
			if acc[n] != first[n] {
				t.Errorf("%s: accuracy %v at batch %d, %v at batch 20", n, acc[n], batch, first[n])
			}
		}
	}
}

// TestLinfProjection checks FAB's projection: the step reaches the
// hyperplane inside the box when the box allows, has the smallest max norm
// that does, and goes to the box's corner when the box does not reach.
func TestLinfProjection(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	for trial := 0; trial < 300; trial++ {
		d := 1 + rng.IntN(40)
		x := make([]float32, d)
		w := make([]float64, d)
		for j := range x {
			x[j] = rng.Float32()
			if rng.IntN(5) > 0 {
				w[j] = rng.NormFloat64()
			}
		}
		b := rng.NormFloat64() * 2
		pr := newLinfProjector(d)
		dst := make([]float64, d)
		norm := pr.project(x, w, b, dst)
		c := -b
		for j := range x {
			c += w[j] * float64(x[j])
		}
		// the best any step of max norm r can do toward the hyperplane
		reach := func(r float64) float64 {
			s := 0.0
			for j, v := range x {
				room := 1 - float64(v)
				if (c > 0) == (w[j] > 0) {
					room = float64(v)
				}
				if w[j] != 0 {
					s += math.Abs(w[j]) * min(r, room)
				}
			}
			return s
		}
		after, got := -b, 0.0
		for j, v := range x {
			y := float64(v) + dst[j]
			if y < -1e-12 || y > 1+1e-12 {
				t.Fatalf("trial %d: element %d leaves the box: %v", trial, j, y)
			}
			if w[j] == 0 && dst[j] != 0 {
				t.Fatalf("trial %d: element %d with w = 0 moves", trial, j)
			}
			after += w[j] * y
			got = max(got, math.Abs(dst[j]))
		}
		if got != norm {
			t.Fatalf("trial %d: returned norm %v, the step's is %v", trial, norm, got)
		}
		if reach(1) >= math.Abs(c) {
			if math.Abs(after) > 1e-9*max(1, math.Abs(c)) {
				t.Fatalf("trial %d: the step ends %v off the hyperplane", trial, after)
			}
			if reach(norm*(1-1e-9)) >= math.Abs(c)*(1+1e-12) && norm > 1e-12 {
				t.Fatalf("trial %d: norm %v is not the smallest", trial, norm)
			}
		} else if math.Abs(math.Abs(c-after)-reach(1)) > 1e-9*max(1, math.Abs(c)) {
			t.Fatalf("trial %d: the box cannot reach the hyperplane, but the step does not go to its corner", trial)
		}
	}
}

func TestBucket(t *testing.T) {
	r := &runner{full: 100}
	want := map[int]int{1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 6, 7: 8, 9: 12, 13: 16, 17: 24, 25: 32, 33: 48, 49: 64, 65: 96, 97: 100, 100: 100}
	for k, b := range want {
		if got := r.bucket(k); got != b {
			t.Errorf("bucket(%d) = %d, want %d", k, got, b)
		}
	}
}

// TestCheckpoints checks APGD's step-size checkpoints against AutoAttack's
// for 100 iterations: windows of 22, 19, 16, 13, 10, 7, then 6.
func TestCheckpoints(t *testing.T) {
	want := []int{21, 40, 56, 69, 79, 86, 92, 98}
	if got := checkpoints(100); !slices.Equal(got, want) {
		t.Errorf("checkpoints(100) = %v, want %v", got, want)
	}
	if got := checkpoints(1); !slices.Equal(got, []int{0}) {
		t.Errorf("checkpoints(1) = %v, want [0]", got)
	}
}
