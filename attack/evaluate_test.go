package attack

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	good := map[string]string{"fgsm": "fgsm", "pgd-20": "pgd-20", "pgd-1": "pgd-1", "cw-20": "cw-20", "cw-100": "cw-100",
		"apgd-ce": "apgd-ce", "apgd-t": "apgd-t", "fab-t": "fab-t", "square": "square", "autoattack": "autoattack"}
	for in, want := range good {
		a, err := Parse(in)
		if err != nil {
			t.Errorf("Parse(%q): %v", in, err)
			continue
		}
		if a.Name() != want {
			t.Errorf("Parse(%q).Name() = %q", in, a.Name())
		}
	}
	if a, _ := Parse("pgd-7"); a.(PGD).Steps != 7 || a.(PGD).Margin {
		t.Errorf("pgd-7 parsed as %+v", a)
	}
	if a, _ := Parse("cw-3"); a.(PGD).Steps != 3 || !a.(PGD).Margin {
		t.Errorf("cw-3 parsed as %+v", a)
	}
	bad := map[string]string{"pgd": "step count", "cw": "step count", "pgd-0": "whole number", "pgd--1": "whole number",
		"pgd-x": "whole number", "pgd-020": "whole number", "pgd-20x": "whole number", "PGD-20": "unknown",
		"apgd": "unknown", "": "unknown", "clean": "unknown", "fab": "unknown"}
	for in, msg := range bad {
		if _, err := Parse(in); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("Parse(%q) = %v, want an error about %q", in, err, msg)
		}
	}
}

func TestEvaluateChecksArguments(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	l := newLinear(rng, 10, []int{1, 4, 4})
	x, y := linearCase(rng, l, 4)
	ok := []string{"clean", "pgd-5"}
	cases := []struct {
		name string
		run  func() error
		msg  string
	}{
		{"eps 0", func() error { _, err := Evaluate(l, x, y, 0, ok, 2, 0, nil); return err }, "eps"},
		{"eps 1.5", func() error { _, err := Evaluate(l, x, y, 1.5, ok, 2, 0, nil); return err }, "eps"},
		{"eps NaN", func() error { _, err := Evaluate(l, x, y, math.NaN(), ok, 2, 0, nil); return err }, "eps"},
		{"batch 0", func() error { _, err := Evaluate(l, x, y, 0.1, ok, 0, 0, nil); return err }, "batch"},
		{"no attacks", func() error { _, err := Evaluate(l, x, y, 0.1, nil, 2, 0, nil); return err }, "no attacks"},
		{"unknown", func() error { _, err := Evaluate(l, x, y, 0.1, []string{"clean", "deepfool"}, 2, 0, nil); return err }, "unknown attack \"deepfool\""},
		{"twice", func() error { _, err := Evaluate(l, x, y, 0.1, []string{"pgd-5", "pgd-5"}, 2, 0, nil); return err }, "twice"},
		{"labels", func() error { _, err := Evaluate(l, x, y[:3], 0.1, ok, 2, 0, nil); return err }, "labels"},
		{"label range", func() error {
			_, err := Evaluate(l, x, []int{0, 1, 2, 10}, 0.1, ok, 2, 0, nil)
			return err
		}, "outside the model's 10 classes"},
		{"pixels", func() error {
			x2 := x.Clone()
			x2.F[5] = 1.5
			_, err := Evaluate(l, x2, y, 0.1, ok, 2, 0, nil)
			return err
		}, "[0, 1]"},
		{"few classes", func() error {
			l3 := newLinear(rng, 3, []int{1, 4, 4})
			_, err := Evaluate(l3, x, []int{0, 1, 2, 0}, 0.1, []string{"apgd-t"}, 2, 0, nil)
			return err
		}, "at least 4 classes"},
	}
	for _, c := range cases {
		calls := l.calls
		err := c.run()
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%s: got %v, want an error about %q", c.name, err, c.msg)
		}
		if l.calls != calls {
			t.Errorf("%s: the model ran before the arguments were checked", c.name)
		}
	}
	for _, a := range allAttacks() {
		if _, err := a.Run(l, x, y, 0, Seeds{}); err == nil {
			t.Errorf("%s ran with eps 0", a.Name())
		}
		if _, err := a.Run(l, x, y, 0.1, Seeds{IDs: []uint64{1}}); err == nil {
			t.Errorf("%s ran with 1 seed id for 4 samples", a.Name())
		}
	}
}

// TestStandardSuiteMNIST runs the standard suite, PGD-20 and APGD-CE with
// their standard settings on MNIST digits against the MNIST fixture ViT at a
// radius where some hold, and checks the invariants and the order of
// strength: the suite at least as strong as PGD-20 and APGD-CE, APGD-CE at
// least as strong as PGD-20. Long (every robust digit meets 9 targets of
// APGD-T and FAB-T and 5000 Square queries): -short skips it.
func TestStandardSuiteMNIST(t *testing.T) {
	if testing.Short() {
		t.Skip("long: the standard AutoAttack suite on the MNIST ViT")
	}
	m := fixtureModel(t, "mnist_vit_op17")
	x, y := mnistTest(t, 2)
	const eps = 0.02
	robust := map[string]int{}
	for _, a := range []Attack{PGD{Steps: 20}, NewAPGDCE(), NewAutoAttack()} {
		start := time.Now()
		res, err := a.Run(m, x, y, eps, Seeds{Seed: 1})
		if err != nil {
			t.Fatalf("%s: %v", a.Name(), err)
		}
		checkResult(t, a.Name(), m, x, y, eps, res)
		robust[a.Name()] = res.Robust()
		t.Logf("%s: %d of %d robust, %v", a.Name(), res.Robust(), len(y), time.Since(start))
	}
	if robust["autoattack"] > robust["apgd-ce"] || robust["apgd-ce"] > robust["pgd-20"] {
		t.Errorf("robust samples: autoattack %d, apgd-ce %d, pgd-20 %d: want them in increasing order",
			robust["autoattack"], robust["apgd-ce"], robust["pgd-20"])
	}
}

// TestEvaluationClassifiesOnce checks that an evaluation classifies the
// clean batch once for all its attacks (each attack's own classification of
// it is remembered, not run again) and that the records are those of the
// attacks run alone.
func TestEvaluationClassifiesOnce(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	l := newLinear(rng, 10, []int{1, 4, 4})
	x, y := linearCase(rng, l, 6)
	y[0] = (y[0] + 1) % 10 // one image wrong to begin with
	ids := []int{10, 11, 12, 13, 14, 15}
	e, err := NewEvaluation([]string{"clean", "pgd-3", "cw-2"}, 0.05, 7, l.Classes())
	if err != nil {
		t.Fatal(err)
	}
	l.calls = 0
	recs, _, err := e.Run(l, x, y, ids, nil)
	if err != nil {
		t.Fatal(err)
	}
	// one clean forward, then per attack its steps and the forward on its examples
	if want := 1 + (3 + 1) + (2 + 1); l.calls != want {
		t.Errorf("the evaluation ran the model %d times, want %d", l.calls, want)
	}
	s := Seeds{Seed: 7, IDs: []uint64{10, 11, 12, 13, 14, 15}}
	for _, a := range []PGD{{Steps: 3}, {Steps: 2, Margin: true}} {
		res, err := a.Run(l, x, y, 0.05, s)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range recs {
			if r.Robust[a.Name()] != !res.Fooled[i] || r.AdvPred[a.Name()] != res.Pred[i] {
				t.Errorf("%s, image %d: evaluation robust %v pred %d, the attack alone fooled %v pred %d",
					a.Name(), i, r.Robust[a.Name()], r.AdvPred[a.Name()], res.Fooled[i], res.Pred[i])
			}
		}
	}
	if recs[0].Robust["clean"] || !recs[1].Robust["clean"] {
		t.Errorf("clean: %v %v, want false true", recs[0].Robust["clean"], recs[1].Robust["clean"])
	}
}
