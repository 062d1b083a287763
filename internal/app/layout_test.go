package app

// README's Layout section lists the packages in layers; every package is in
// one, and imports (outside its tests) only packages of its layer or of the
// layers before it.

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/hyperat/hyperat/internal/testutil"
)

const module = "github.com/hyperat/hyperat/"

// layerItem is an item of the numbered list: "1. `fsx`, ...", continued on
// the indented lines after it.
var layerItem = regexp.MustCompile("(?m)^(\\d+)\\. ((?:.*\\n)(?:   .*\\n)*)")

// backticked are the names in an item: `pkg` or `folder/`.
var backticked = regexp.MustCompile("`([a-z0-9_/]+)`")

// packages lists the module's packages (folders holding non-test Go files)
// with the project packages each imports outside its tests.
func packages(t *testing.T, root string) map[string][]string {
	t.Helper()
	pkgs := map[string][]string{}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); p != root && (strings.HasPrefix(n, ".") || strings.HasPrefix(n, "_") || n == "testdata" || n == "node_modules" || n == "fixtures") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(p))
		pkg := filepath.ToSlash(rel)
		if _, ok := pkgs[pkg]; !ok {
			pkgs[pkg] = nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if dep, ok := strings.CutPrefix(path, module); ok && !slices.Contains(pkgs[pkg], dep) {
				pkgs[pkg] = append(pkgs[pkg], dep)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

func TestLayout(t *testing.T) {
	root := testutil.Root()
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	section, _, _ := strings.Cut(string(b[strings.Index(string(b), "\n## Layout\n")+1:]), "\nWhat each holds")
	pkgs := packages(t, root)
	layer := map[string]int{}
	items := layerItem.FindAllStringSubmatch(section, -1)
	if len(items) < 5 {
		t.Fatalf("README's Layout section lists %d layers", len(items))
	}
	for i, it := range items {
		for _, m := range backticked.FindAllStringSubmatch(it[2], -1) {
			name, found := m[1], false
			for p := range pkgs {
				if p == strings.TrimSuffix(name, "/") || strings.HasSuffix(name, "/") && strings.HasPrefix(p, name) {
					if l, dup := layer[p]; dup {
						t.Errorf("README's Layout puts %s in layers %d and %d", p, l+1, i+1)
					}
					layer[p], found = i, true
				}
			}
			if !found {
				t.Errorf("README's Layout names %s, which is no package", name)
			}
		}
	}
	for p, deps := range pkgs {
		l, ok := layer[p]
		if !ok {
			t.Errorf("package %s is in no layer of README's Layout", p)
			continue
		}
		for _, d := range deps {
			if ld, ok := layer[d]; ok && ld > l {
				t.Errorf("%s (layer %d) imports %s, of layer %d above it", p, l+1, d, ld+1)
			}
		}
	}
}
