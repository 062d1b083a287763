package compile

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// docs/OPS.md's gradient column says "rule" for exactly the listed
// operators whose definition has a gradient rule; "lowered" only for
// operators the importer writes as others (no definition here); "none" for
// the others.
func TestOpsDocGradients(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "docs", "OPS.md"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?m)^\\| `([A-Za-z]+)` \\| ([^|]*) \\|")
	rows := re.FindAllStringSubmatch(string(data), -1)
	if len(rows) == 0 {
		t.Fatal("no operator rows in docs/OPS.md")
	}
	for _, r := range rows {
		op, col := r[1], strings.TrimSpace(r[2])
		d, defined := defs[op]
		switch {
		case col == "rule":
			if !defined || d.grad == nil {
				t.Errorf("%s: OPS.md says rule, compile has none", op)
			}
		case col == "lowered":
			if defined {
				t.Errorf("%s: OPS.md says lowered, compile defines it", op)
			}
		case col == "none" || strings.HasPrefix(col, "none: "):
			if defined && d.grad != nil {
				t.Errorf("%s: OPS.md says none, compile has a rule", op)
			}
		default:
			t.Errorf("%s: gradient column %q is none of rule, lowered, none", op, col)
		}
	}
}
