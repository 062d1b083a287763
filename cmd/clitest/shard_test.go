package clitest

// hyperat-eval --shard I/N and hyperat-eval merge: the shards' reports of an
// evaluation merge into the report of a single run, byte for byte, and a
// merge of shards that do not make one evaluation is refused with one line.

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/hyperat/hyperat/internal/testutil"
	"github.com/hyperat/hyperat/onnx"
)

// shardArgs is an evaluation of the first 11 MNIST test images in batches of
// 2 (6 batches, the last one short) under clean, PGD-2 and AutoAttack, at a
// radius where some images resist PGD-2 and AutoAttack needs two attacks.
func shardArgs(json string, extra ...string) []string {
	a := []string{testutil.Fixture("models", "mnist_vit_op17.onnx"), "--data", testutil.Fixture("mnist"), "--eps", "0.1",
		"--attacks", "clean,pgd-2", "--suite", "autoattack", "--limit", "11", "--batch", "2", "--seed", "3", "--json", json}
	return append(a, extra...)
}

// Two interleaved shards, three contiguous ones and six (one batch each)
// merge, given in any order, into the single run's report, byte for byte;
// each shard holds its own images; a shard run again writes the same report.
func TestEvalShardsMerge(t *testing.T) {
	dir := t.TempDir()
	succeeds(t, hyperat(t, dir, "hyperat-eval", shardArgs("whole.json")...))
	whole, want := readReport(t, filepath.Join(dir, "whole.json"))
	if whole.N != 11 || whole.Suite == nil || whole.Suite.RobustAfter["apgd-ce"] == 0 || whole.Results["pgd-2"] == 0 || whole.Results["pgd-2"] == whole.Results["clean"] {
		t.Fatalf("the whole run does not separate the attacks: %+v %+v", whole.Results, whole.Suite)
	}
	for _, c := range []struct {
		mode  string
		count int
		order []int // the order in which the reports are given to merge
	}{{"interleaved", 2, []int{1, 0}}, {"contiguous", 3, []int{2, 0, 1}}, {"contiguous", 6, []int{5, 3, 1, 0, 2, 4}}} {
		var reports []string
		seen := map[int]bool{}
		for i := range c.count {
			name := fmt.Sprintf("%s%d-%d.json", c.mode, c.count, i)
			r := hyperat(t, dir, "hyperat-eval", shardArgs(name, "--shard", fmt.Sprintf("%d/%d", i, c.count), "--shard-mode", c.mode)...)
			succeeds(t, r)
			if !strings.Contains(r.stdout, fmt.Sprintf("shard   %d of %d (%s batches of 2)", i, c.count, c.mode)) {
				t.Errorf("shard %d/%d does not say which it is:\n%s", i, c.count, r.stdout)
			}
			rep, _ := readReport(t, filepath.Join(dir, name))
			for k, im := range rep.Images {
				b := im.Index / 2 // the batch the image is in
				if (c.mode == "interleaved" && b%c.count != i) || (c.mode == "contiguous" && b*c.count/6 != i) || seen[im.Index] {
					t.Errorf("shard %d/%d %s holds image %d (record %d)", i, c.count, c.mode, im.Index, k)
				}
				seen[im.Index] = true
				if !maps.Equal(im.Robust, whole.Images[im.Index].Robust) || im.AdvPred["pgd-2"] != whole.Images[im.Index].AdvPred["pgd-2"] ||
					im.FooledBy != whole.Images[im.Index].FooledBy {
					t.Errorf("shard %d/%d: image %d %+v, the single run has %+v", i, c.count, im.Index, im, whole.Images[im.Index])
				}
			}
			if rep.N != len(rep.Images) || rep.N == 0 {
				t.Errorf("shard %d/%d: n %d, %d images", i, c.count, rep.N, len(rep.Images))
			}
			reports = append(reports, name)
		}
		if len(seen) != 11 {
			t.Errorf("%d %s shards hold %d of the 11 images", c.count, c.mode, len(seen))
		}
		args := []string{"merge"}
		for _, k := range c.order {
			args = append(args, reports[k])
		}
		out := fmt.Sprintf("merged-%s%d.json", c.mode, c.count)
		r := hyperat(t, dir, "hyperat-eval", append(args, "--json", out)...)
		succeeds(t, r)
		if !strings.Contains(r.stdout, fmt.Sprintf("merged  %d shards (%s): 11 images", c.count, c.mode)) || !strings.Contains(r.stdout, "autoattack") {
			t.Errorf("merge prints:\n%s", r.stdout)
		}
		if _, got := readReport(t, filepath.Join(dir, out)); !bytes.Equal(got, want) {
			t.Errorf("%d %s shards merged differ from the single run:\n%s\nwant\n%s", c.count, c.mode, got, want)
		}
	}
	// a shard run again (a pod the Job retries) writes the same report
	first, _ := os.ReadFile(filepath.Join(dir, "contiguous3-1.json"))
	succeeds(t, hyperat(t, dir, "hyperat-eval", shardArgs("again.json", "--shard", "1/3", "--shard-mode", "contiguous")...))
	if again, _ := os.ReadFile(filepath.Join(dir, "again.json")); !bytes.Equal(again, first) {
		t.Errorf("shard 1/3 run again gives another report:\n%s\nfirst\n%s", again, first)
	}
}

// mnistCopy is a copy of the MNIST fixture whose first test label is
// changed: the same number of images, other labels.
func mnistCopy(t *testing.T, dir string) string {
	t.Helper()
	out := filepath.Join(dir, "mnist-copy")
	if err := os.Mkdir(out, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"t10k-images-idx3-ubyte.gz", "train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"} {
		if err := os.Symlink(testutil.Fixture("mnist", f), filepath.Join(out, f)); err != nil {
			t.Fatal(err)
		}
	}
	lab := readGz(t, testutil.Fixture("mnist", "t10k-labels-idx1-ubyte.gz"))
	lab[8] = (lab[8] + 1) % 10
	var b bytes.Buffer
	z := gzip.NewWriter(&b)
	z.Write(lab)
	z.Close()
	write(t, filepath.Join(out, "t10k-labels-idx1-ubyte.gz"), b.Bytes())
	return out
}

// Shards that do not make one evaluation, reports that are not shards', and
// bad --shard values are refused with one line naming the difference.
func TestEvalMergeRefuses(t *testing.T) {
	dir := t.TempDir()
	mpath := testutil.Fixture("models", "mnist_vit_op17.onnx")
	mdata, err := os.ReadFile(mpath)
	if err != nil {
		t.Fatal(err)
	}
	args := func(json, shard string, extra ...string) []string {
		a := []string{mpath, "--data", testutil.Fixture("mnist"), "--eps", "0.05", "--attacks", "clean,pgd-2", "--limit", "9",
			"--batch", "2", "--seed", "1", "--json", json}
		if shard != "" {
			a = append(a, "--shard", shard)
		}
		for k := 0; k+1 < len(extra); k += 2 { // replace a flag's value (or the model), or add the flag
			if extra[k] == "model" {
				a[0] = extra[k+1]
			} else if i := slices.Index(a, extra[k]); i >= 0 {
				a[i+1] = extra[k+1]
			} else {
				a = append(a, extra[k], extra[k+1])
			}
		}
		return a
	}
	shard := func(json, shard string, extra ...string) string {
		t.Helper()
		succeeds(t, hyperat(t, dir, "hyperat-eval", args(json, shard, extra...)...))
		return json
	}
	a0, a1 := shard("a0.json", "0/2"), shard("a1.json", "1/2")
	succeeds(t, hyperat(t, dir, "hyperat-eval", "merge", a0, a1))
	other := edit(t, mdata, dir, "other.onnx", func(m *onnx.ModelProto) { m.DocString = proto.String("another model, same numbers") })
	bad := []struct {
		reports []string
		want    []string
	}{
		{[]string{a0}, []string{"1 of the 2 shards missing: 1"}},
		{[]string{a0, a1, a0}, []string{"a0.json and a0.json are both shard 0/2"}},
		{[]string{a0, shard("eps.json", "1/2", "--eps", "0.06")}, []string{"eps.json", "a0.json", "eps 0.06 Linf (there 0.05 Linf)"}},
		{[]string{a0, shard("seed.json", "1/2", "--seed", "2")}, []string{"seed 2 (there 1)"}},
		{[]string{a0, shard("att.json", "1/2", "--attacks", "clean,pgd-3")}, []string{"the attacks clean,pgd-3 (there clean,pgd-2)"}},
		{[]string{a0, shard("limit.json", "1/2", "--limit", "10")}, []string{"a list of 10 images (there 9"}},
		{[]string{a0, shard("data.json", "1/2", "--data", mnistCopy(t, dir))}, []string{"other images or labels"}},
		{[]string{a0, shard("model.json", "1/2", "model", other)}, []string{"another model (sha256"}},
		{[]string{a0, shard("batch.json", "1/2", "--batch", "3")}, []string{"--batch 3 (there 2)"}},
		{[]string{a0, shard("n3.json", "1/3")}, []string{"one of 3 interleaved shards (there 2 interleaved)"}},
		{[]string{a0, shard("cont.json", "1/2", "--shard-mode", "contiguous")}, []string{"one of 2 contiguous shards (there 2 interleaved)"}},
		{[]string{a0, a1, "nothere.json"}, []string{"nothere.json", "no such file"}},
		{[]string{a0, write(t, filepath.Join(dir, "junk.json"), []byte(`{"a": 1}`))}, []string{"junk.json: not a report of hyperat-eval --json"}},
	}
	// the whole evaluation's report, not a shard's
	succeeds(t, hyperat(t, dir, "hyperat-eval", args("whole.json", "")...))
	bad = append(bad, struct {
		reports []string
		want    []string
	}{[]string{a0, "whole.json"}, []string{"whole.json: the report of a whole evaluation (made without --shard)"}})
	// a shard's records edited
	b, _ := os.ReadFile(filepath.Join(dir, a1))
	var rep map[string]any
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	rep["images"].([]any)[1].(map[string]any)["index"] = 4
	b, _ = json.Marshal(rep)
	bad = append(bad, struct {
		reports []string
		want    []string
	}{[]string{a0, write(t, filepath.Join(dir, "edited.json"), b)}, []string{"edited.json: damaged report: record 1 is of image 4, want 3"}})
	for _, c := range bad {
		fails(t, hyperat(t, dir, "hyperat-eval", append(append([]string{"merge"}, c.reports...), "--json", "m.json")...), 1, c.want...)
	}
	if _, err := os.Stat(filepath.Join(dir, "m.json")); err == nil {
		t.Error("a refused merge wrote a report")
	}

	// shards computed by other kernels (another instruction set)
	cmd := exec.Command(filepath.Join(bin, "hyperat-eval"), args("go.json", "1/2")...)
	cmd.Dir, cmd.Env = dir, append(os.Environ(), "HYPERAT_NOAVX512=1", "HYPERAT_NOAVX2=1")
	succeeds(t, runCmd(t, "hyperat-eval", cmd))
	if r0, _ := readReport(t, filepath.Join(dir, a0)); !strings.Contains(r0.Kernels, "go") {
		fails(t, hyperat(t, dir, "hyperat-eval", "merge", a0, "go.json"), 1, "computed by the kernels sgemm go, vmath go")
	}

}

// Mistakes in --shard, --shard-mode and merge's command line: status 2.
func TestEvalShardUsage(t *testing.T) {
	dir := t.TempDir()
	mpath := testutil.Fixture("models", "mnist_vit_op17.onnx")
	args := func(shard string, extra ...string) []string {
		a := []string{mpath, "--data", testutil.Fixture("mnist"), "--eps", "0.05", "--attacks", "clean", "--limit", "9", "--batch", "2", "--json", "x.json"}
		if shard != "" {
			a = append(a, "--shard", shard)
		}
		return append(a, extra...)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"merge"}, "give the reports of the shards"},
		{[]string{"merge", "a0.json", "a1.json", "--eps", "0.1"}, "merge takes the shards' reports and --json, not --eps"},
		{[]string{"merge", "a0.json", "a1.json", "--json", "./a1.json"}, "--json ./a1.json is one of the shards' reports"},
		{args("2/2"), `--shard "2/2": the index must be from 0 to 1`},
		{args("1"), `--shard "1": want I/N`},
		{args("0/0"), "the number of shards must be at least 1"},
		{args("0/2", "--shard-mode", "random"), `--shard-mode "random": want interleaved or contiguous`},
		{args("", "--shard-mode", "contiguous"), "--shard-mode goes with --shard"},
		{[]string{mpath, "--input", "x.npy", "--logits", "y.npy", "--shard", "0/2"}, "--shard"},
	} {
		fails(t, hyperat(t, dir, "hyperat-eval", c.args...), 2, c.want)
	}
	fails(t, hyperat(t, dir, "hyperat-eval", args("5/6")...), 1, "9 images in batches of 2 make 5 batches, fewer than 6 shards")
}
