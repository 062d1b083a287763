package hyperat

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/hyperat/hyperat/kernels"
)

// With AttackPrecision bf16 the training attacks run a program whose
// products are all bfloat16, the models of validation and evaluation stay
// float32, and the setting survives a checkpoint.
func TestAttackPrecision(t *testing.T) {
	cfg := smallConfig("hyperat")
	cfg.AttackPrecision = kernels.BF16
	tr, err := NewTrainer(loadHF(t), cfg, newSynth(16, 4), indices(16))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tr.Step(); err != nil {
		t.Fatal(err)
	}
	v, ok := tr.Net.attackBF16[cfg.Batch]
	if !ok {
		t.Fatal("the training attack did not run a bf16 program")
	}
	marked := 0
	for _, n := range v.p.Graph.Nodes {
		if n.Attrs.Str("precision", "") == "bf16" {
			marked++
		}
	}
	if marked == 0 {
		t.Fatal("the bf16 attack program marks no product")
	}
	if _, ok := tr.Net.attack[cfg.Batch]; ok {
		t.Error("a bf16 run compiled the float32 attack program before any evaluation")
	}
	for _, v := range tr.Net.train {
		for _, n := range v.p.Graph.Nodes {
			if n.Attrs.Has("precision") {
				t.Fatalf("a training program marks %s %s", n.Op, n.Name)
			}
		}
	}
	m, err := tr.ForDefense(0)
	if err != nil {
		t.Fatal(err)
	}
	if p := m.(netModel).prec; p != kernels.FP32 {
		t.Errorf("ForDefense's model runs %v products", p)
	}
	x, _, _ := newSynth(1, 5).Batch([]int{0})
	if _, err := m.Logits(x); err != nil {
		t.Fatal(err)
	}
	if len(tr.Net.attack) == 0 {
		t.Fatal("ForDefense's model compiled no float32 program")
	}
	for _, v := range tr.Net.attack {
		for _, n := range v.p.Graph.Nodes {
			if n.Attrs.Has("precision") {
				t.Fatalf("the float32 attack program marks %s %s", n.Op, n.Name)
			}
		}
	}

	// a checkpoint stores the snapshot's configuration as JSON (package
	// workspace): the attack precision must survive the round trip
	b, err := json.Marshal(tr.Snapshot().Config)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"AttackPrecision":"bf16"`) {
		t.Errorf("the snapshot's configuration does not name the attack precision:\n%s", b)
	}
	var back Config
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.AttackPrecision != kernels.BF16 {
		t.Errorf("the configuration gives back attack precision %v", back.AttackPrecision)
	}
}
