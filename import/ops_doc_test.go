package onnximport

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// docs/OPS.md, which unsupported-operator errors point to, lists exactly the
// operators the importer converts.
func TestOpsDocMatchesConverters(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "docs", "OPS.md"))
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile("(?m)^\\| `([A-Za-z][A-Za-z0-9]*)` \\|")
	var listed []string
	for _, m := range re.FindAllStringSubmatch(string(data), -1) {
		listed = append(listed, m[1])
	}
	sort.Strings(listed)
	if got, want := strings.Join(listed, " "), strings.Join(SupportedOps(), " "); got != want {
		t.Fatalf("docs/OPS.md lists\n  %s\nthe importer converts\n  %s", got, want)
	}
}
