package attack

import (
	"encoding/json"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/internal/testutil"
)

// pgdRef is fixtures/golden/attacks/pgd_ref.json, written by
// fixtures/gen/attack_ref.py with PyTorch.
type pgdRef struct {
	Model   string             `json:"model"`
	N       int                `json:"n"`
	Eps     float64            `json:"eps"`
	Steps   int                `json:"steps"`
	Seed    uint64             `json:"seed"`
	Results map[string]float64 `json:"results"`
	Robust  map[string]string  `json:"robust"`
}

func loadPGDRef(t *testing.T) pgdRef {
	t.Helper()
	data, err := os.ReadFile(testutil.Fixture("golden", "attacks", "pgd_ref.json"))
	if err != nil {
		t.Skipf("no PyTorch reference: %v", err)
	}
	var ref pgdRef
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatal(err)
	}
	if ref.N < 1 || !(ref.Eps > 0) || ref.Steps < 1 || len(ref.Results) == 0 {
		t.Fatalf("pgd_ref.json is incomplete: %+v", ref)
	}
	return ref
}

// compareWithPyTorch runs the named attacks with the reference's settings on
// its first n images (all when n is 0) and compares the accuracies with
// PyTorch's on the same images, each within its tolerance in points.
func compareWithPyTorch(t *testing.T, n int, tol map[string]float64) {
	ref := loadPGDRef(t)
	if n == 0 {
		n = ref.N
	}
	m := fixtureModel(t, strings.TrimSuffix(filepath.Base(ref.Model), ".onnx"))
	x, y := mnistTest(t, n)
	names := slices.Sorted(maps.Keys(tol))
	for _, name := range names {
		if _, ok := ref.Results[name]; !ok || len(ref.Robust[name]) != ref.N {
			t.Fatalf("pgd_ref.json has no result for %s", name)
		}
	}
	const batch = 32
	for _, name := range names {
		start := time.Now()
		robust := make([]bool, 0, n)
		for lo := 0; lo < n; lo += batch {
			hi := min(lo+batch, n)
			xb := graph.F32([]int{hi - lo, 1, 28, 28}, x.F[lo*784:hi*784])
			if name == "clean" {
				ok, err := cleanRight(m, xb, y[lo:hi], hi-lo)
				if err != nil {
					t.Fatal(err)
				}
				robust = append(robust, ok...)
				continue
			}
			a, err := Parse(name)
			if err != nil {
				t.Fatal(err)
			}
			ids := make([]uint64, hi-lo)
			for i := range ids {
				ids[i] = uint64(lo + i)
			}
			res, err := a.Run(m, xb, y[lo:hi], ref.Eps, Seeds{Seed: ref.Seed, IDs: ids})
			if err != nil {
				t.Fatal(err)
			}
			checkResult(t, name, m, xb, y[lo:hi], ref.Eps, res)
			for _, f := range res.Fooled {
				robust = append(robust, !f)
			}
		}
		ours, theirs, onlyOurs, onlyTheirs := 0, 0, 0, 0
		for i, r := range robust {
			p := ref.Robust[name][i] == '1'
			switch {
			case r && !p:
				onlyOurs++
			case p && !r:
				onlyTheirs++
			}
			if r {
				ours++
			}
			if p {
				theirs++
			}
		}
		if n == ref.N && math.Abs(float64(theirs)/float64(n)-ref.Results[name]) > 1e-9 {
			t.Fatalf("pgd_ref.json: %s's per-sample results do not add up to its accuracy", name)
		}
		ourAcc, pt := 100*float64(ours)/float64(n), 100*float64(theirs)/float64(n)
		t.Logf("%s at eps %v on %d images: ours %.1f%%, PyTorch %.1f%%; robust only here %d, only in PyTorch %d; %v",
			name, ref.Eps, n, ourAcc, pt, onlyOurs, onlyTheirs, time.Since(start).Round(time.Second))
		if math.Abs(ourAcc-pt) > tol[name] {
			t.Errorf("%s: accuracy %.1f%% here, %.1f%% in PyTorch: more than %.1f points apart", name, ourAcc, pt, tol[name])
		}
	}
}

// TestPGDMatchesPyTorch compares our clean, FGSM and PGD-20 accuracies on the
// first 500 MNIST test images with PyTorch's (fixtures/gen/attack_ref.py):
// clean and FGSM are deterministic and must agree up to a sample or two
// whose logits sit on a tie; PGD-20 starts at random points drawn by another
// generator and must agree within 2.5 points. It is long (about 22 model
// passes over 500 images), so -short skips it.
func TestPGDMatchesPyTorch(t *testing.T) {
	if testing.Short() {
		t.Skip("long: PGD-20 on 500 MNIST images")
	}
	compareWithPyTorch(t, 0, map[string]float64{"clean": 0.4, "fgsm": 0.6, "pgd-20": 2.5})
}

// TestCWMatchesPyTorch is the same for CW-20 (PGD-20 on the margin loss) on
// the first 200 of the reference's images, to save time; PyTorch's accuracy
// on them comes from its per-sample results.
func TestCWMatchesPyTorch(t *testing.T) {
	if testing.Short() {
		t.Skip("long: CW-20 on 200 MNIST images")
	}
	compareWithPyTorch(t, 200, map[string]float64{"clean": 0.5, "cw-20": 3})
}
