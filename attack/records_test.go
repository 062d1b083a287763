package attack

import (
	"maps"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/hyperat/hyperat/graph"
)

// TestEvaluationRecords checks the per-image records: an image's record and
// examples are the same whatever batch it is in and whichever images are
// with it (here: all at once, then in batches of 3 in reverse order), each
// record agrees with the attack run alone, AdvPred is the model's class on
// the returned example, and the suite's FooledBy names an attack that fools
// the image alone.
func TestEvaluationRecords(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 5))
	l := newLinear(rng, 10, []int{1, 5, 5})
	x, y := linearCase(rng, l, 11)
	y[4] = (y[4] + 3) % 10
	const eps = 0.02
	names := []string{"clean", "pgd-5", "apgd-t", "square", "autoattack"}
	e, err := NewEvaluation(names, eps, 7, 10)
	if err != nil {
		t.Fatal(err)
	}
	n, d := len(y), 25
	ids := make([]int, n)
	for i := range ids {
		ids[i] = 100 + 2*i
	}
	units := 0
	all, advs, err := e.Run(l, x, y, ids, func(u int) { units += u })
	if err != nil {
		t.Fatal(err)
	}
	if units != n*e.Units() || e.Units() != len(names)+3 {
		t.Errorf("progress %d units, want %d x %d", units, n, len(names)+3)
	}
	for lo := n; lo > 0; lo -= 3 {
		part := []int{}
		for i := max(lo-3, 0); i < lo; i++ {
			part = append(part, i)
		}
		xb := graph.F32([]int{len(part), 1, 5, 5}, gather(nil, x.F, part, d))
		yb, idb := make([]int, len(part)), make([]int, len(part))
		for k, i := range part {
			yb[k], idb[k] = y[i], ids[i]
		}
		recs, ab, err := e.Run(l, xb, yb, idb, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, i := range part {
			if !reflect.DeepEqual(recs[k], all[i]) {
				t.Errorf("image %d: record %+v in a batch of %d, %+v in all", i, recs[k], len(part), all[i])
			}
			for a := range names {
				if advs[a] == nil {
					continue
				}
				for j := 0; j < d; j++ {
					if math.Float32bits(ab[a].F[k*d+j]) != math.Float32bits(advs[a].F[i*d+j]) {
						t.Fatalf("image %d, %s: the example differs between batches", i, names[a])
					}
				}
			}
		}
	}
	seeds := Seeds{Seed: 7, IDs: make([]uint64, n)}
	for i := range ids {
		seeds.IDs[i] = uint64(ids[i])
	}
	fooledAlone := map[string][]bool{}
	for a, name := range names {
		if name == "clean" {
			continue
		}
		at, _ := Parse(name)
		res, err := at.Run(l, x, y, eps, seeds)
		if err != nil {
			t.Fatal(err)
		}
		fooledAlone[name] = res.Fooled
		pred := predictedLinear(l, advs[a])
		for i, r := range all {
			if r.Robust[name] != !res.Fooled[i] || r.AdvPred[name] != res.Pred[i] || r.AdvPred[name] != pred[i] {
				t.Errorf("image %d, %s: record robust %v, class %d; alone robust %v, class %d; the model on the example: %d",
					i, name, r.Robust[name], r.AdvPred[name], !res.Fooled[i], res.Pred[i], pred[i])
			}
		}
	}
	for _, ex := range NewAutoAttack().Attacks {
		res, err := ex.Run(l, x, y, eps, seeds)
		if err != nil {
			t.Fatal(err)
		}
		fooledAlone[ex.Name()] = res.Fooled
	}
	for i, r := range all {
		if r.Index != ids[i] || r.Label != y[i] || r.Robust["clean"] != (r.CleanPred == y[i]) {
			t.Errorf("image %d: record %+v", i, r)
		}
		switch {
		case !r.Robust["clean"] || r.Robust["autoattack"]:
			if r.FooledBy != "" {
				t.Errorf("image %d: fooled by %q, but the suite did not fool it", i, r.FooledBy)
			}
		case r.FooledBy == "" || !fooledAlone[r.FooledBy][i]:
			t.Errorf("image %d: the suite fooled it, by %q, which does not fool it alone", i, r.FooledBy)
		}
	}
	if !slicesHas(all, func(r Record) bool { return r.FooledBy != "" }) || !slicesHas(all, func(r Record) bool { return r.Robust["autoattack"] }) {
		t.Errorf("eps %v fools all or none: %v", eps, maps.Collect(func(yield func(int, bool) bool) {
			for _, r := range all {
				yield(r.Index, r.Robust["autoattack"])
			}
		}))
	}
}

func slicesHas(recs []Record, f func(Record) bool) bool {
	for _, r := range recs {
		if f(r) {
			return true
		}
	}
	return false
}

// TestSuiteFewClasses runs the suite on a 3-class model: apgd-t, whose loss
// needs 4 classes, is left out, and the rest run.
func TestSuiteFewClasses(t *testing.T) {
	rng := rand.New(rand.NewPCG(6, 6))
	l := newLinear(rng, 3, []int{1, 4, 4})
	x, y := linearCase(rng, l, 10)
	res, err := NewAutoAttack().Run(l, x, y, 0.6, Seeds{Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	checkResult(t, "autoattack", l, x, y, 0.6, res)
	for i, by := range res.By {
		if by == "apgd-t" {
			t.Errorf("sample %d fooled by apgd-t on a 3-class model", i)
		}
	}
	if res.Robust() == len(y) {
		t.Errorf("no sample fooled at eps 0.6")
	}
	if _, err := NewEvaluation([]string{"apgd-t"}, 0.05, 0, 3); err == nil {
		t.Error("apgd-t accepted for a 3-class model")
	}
	if _, err := NewEvaluation([]string{"autoattack"}, 0.05, 0, 3); err != nil {
		t.Errorf("autoattack refused for a 3-class model: %v", err)
	}
}

// TestCheckpointRises checks that APGD counts the rises of the loss at a
// checkpoint as AutoAttack's check_oscillation does: at the first one, step
// 0's loss is compared with 0 (its loss_steps[-1], not yet written), so the
// same losses halve the step when they are negative (the targeted DLR loss
// of a sample not fooled) and not when they are positive.
func TestCheckpointRises(t *testing.T) {
	const iters = 100
	run := func(shift float64) bool {
		st := &apgdState{APGD: NewAPGDCE()}
		ru := &apgdRun{st: st, d: 1, act: []int{0}, hist: [][]float64{make([]float64, iters)},
			cur: []float32{0}, best: []float32{0}, grad: []float32{0}, gBest: []float32{0},
			lossBest: []float64{100}, lossLast: []float64{0}, reduced: []bool{true}, eta: []float32{1}}
		// steps 0..21: 16 rises among the 21 steps after step 0
		for i := 0; i < 22; i++ {
			v := float64(i)
			if i%4 == 3 && i < 21 {
				v -= 10
			}
			ru.hist[0][i] = v + shift
		}
		ru.checkpoint(21, 22)
		return ru.eta[0] == 0.5
	}
	ups := 0
	for i := 1; i < 22; i++ {
		v, w := float64(i), float64(i-1)
		if i%4 == 3 && i < 21 {
			v -= 10
		}
		if (i-1)%4 == 3 && i-1 < 21 {
			w -= 10
		}
		if v > w {
			ups++
		}
	}
	if ups != 16 {
		t.Fatalf("the test's losses rise %d times, want 16", ups)
	}
	if run(1000) {
		t.Error("positive losses: 17 rises of 22 (> 0.75 x 22) halved the step")
	}
	if !run(-1000) {
		t.Error("negative losses: 16 rises of 22 (<= 0.75 x 22) did not halve the step")
	}
}
