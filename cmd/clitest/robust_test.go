package clitest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/hyperat/hyperat/internal/testutil"
)

// hyperat-eval --data writes the accuracies it prints to --json, under the
// attack names as given, and refuses bad arguments with one line.
func TestEvalRobustness(t *testing.T) {
	dir := t.TempDir()
	m := testutil.Fixture("models", "mnist_vit_op17.onnx")
	mnist := testutil.Fixture("mnist")
	succeeds(t, hyperat(t, dir, "hyperat-eval", m, "--data", mnist, "--eps", "8/255", "--attacks", "clean,fgsm,pgd-2", "--limit", "16", "--json", "r.json"))
	b, err := os.ReadFile(filepath.Join(dir, "r.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r struct {
		Model   string             `json:"model"`
		Eps     float64            `json:"eps"`
		N       int                `json:"n"`
		Results map[string]float64 `json:"results"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if r.N != 16 || r.Eps != 8.0/255 || len(r.Results) != 3 || r.Model != "mnist_vit_op17.onnx" {
		t.Fatalf("report %s", b)
	}
	if r.Results["clean"] < 0.5 || r.Results["pgd-2"] > r.Results["fgsm"]+0.2 || r.Results["fgsm"] > r.Results["clean"] {
		t.Fatalf("implausible accuracies %v", r.Results)
	}
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{m, "--data", mnist, "--attacks", "clean"}, 2, "--eps"},
		{[]string{m, "--data", mnist, "--eps", "0"}, 2, "(0, 1]"},
		{[]string{m, "--data", mnist, "--eps", "2/255", "--attacks", "pgd"}, 2, "step count"},
		{[]string{m, "--data", mnist, "--eps", "0.1", "--attacks", "clean,clean"}, 2, "twice"},
		{[]string{m, "--data", mnist, "--eps", "0.1", "--attacks", "deepfool"}, 2, "unknown attack"},
		{[]string{m, "--data", dir, "--eps", "0.1"}, 1, dir},
	} {
		fails(t, hyperat(t, dir, "hyperat-eval", c.args...), c.code, c.want)
	}
}
