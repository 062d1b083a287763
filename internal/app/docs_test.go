package app

// The pages that describe the commands stay true: docs/FLAGS.md lists every
// flag of every command with its default and nothing else, each --help names
// every flag and has examples and the exit statuses, and every row of
// docs/BAD_INPUT.md names tests that exist.

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/hyperat/hyperat/internal/cli"
	"github.com/hyperat/hyperat/internal/testutil"
)

// commands are the commands whose flags this package defines.
var commands = []struct {
	name string
	cmd  func() *cli.Command
	run  func(*cli.Command, []string) error
}{
	{"hyperat-import", ImportCommand, Import},
	{"hyperat-tune", TuneCommand, Tune},
	{"hyperat-export", ExportCommand, Export},
	{"hyperat-eval", EvalCommand, Eval},
}

// demoMain is the demo's source: its flags are read from it.
const demoMain = "cmd/hyperat-demo/main.go"

// flagsOf defines a command's flags by asking it for --help, and returns them
// by name with their defaults as pflag prints them, and the command.
func flagsOf(t *testing.T, i int) (map[string]string, *cli.Command) {
	t.Helper()
	c := commands[i].cmd()
	c.Stdout, c.Stderr = io.Discard, io.Discard
	commands[i].run(c, []string{"--help"})
	flags := map[string]string{}
	c.Flags.VisitAll(func(f *pflag.Flag) { flags[f.Name] = f.DefValue })
	if len(flags) == 0 {
		t.Fatalf("%s defines no flags", commands[i].name)
	}
	return flags, c
}

// demoFlags reads the demo's flags from calls c.Flags.<Type>("name", default, ...)
// in its source, with their defaults written as pflag prints them.
func demoFlags(t *testing.T) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(testutil.Root(), demoMain), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	flags := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok || len(call.Args) < 2 {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		if recv, ok := sel.X.(*ast.SelectorExpr); !ok || recv.Sel.Name != "Flags" {
			return true
		}
		name, ok := call.Args[0].(*ast.BasicLit)
		if !ok || name.Kind != token.STRING {
			t.Errorf("%s: a flag whose name is not a literal", demoMain)
			return true
		}
		flag, _ := strconv.Unquote(name.Value)
		switch v := call.Args[1].(type) {
		case *ast.BasicLit:
			flags[flag] = v.Value
			if v.Kind == token.STRING {
				flags[flag], _ = strconv.Unquote(v.Value)
			}
		case *ast.Ident: // true, false
			flags[flag] = v.Name
		default:
			flags[flag] = "?" // computed: the page is not checked against it
		}
		return true
	})
	if len(flags) == 0 {
		t.Fatalf("%s: no flags found", demoMain)
	}
	return flags
}

// docRow is one flag of docs/FLAGS.md: its name and its default cell.
type docRow struct{ name, def string }

var flagRow = regexp.MustCompile("^\\| `--([a-z0-9-]+)")

// flagsPage reads docs/FLAGS.md: for each "## command" section, the flags
// of its table rows (rows that start with "| `--name").
func flagsPage(t *testing.T) map[string][]docRow {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testutil.Root(), "docs", "FLAGS.md"))
	if err != nil {
		t.Fatal(err)
	}
	page := map[string][]docRow{}
	section := ""
	for _, line := range strings.Split(string(b), "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			section = strings.Trim(strings.Fields(h + " x")[0], "`")
			continue
		}
		m := flagRow.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 4 {
			t.Errorf("FLAGS.md: row %q has no default column", line)
			continue
		}
		page[section] = append(page[section], docRow{name: m[1], def: strings.TrimSpace(cells[2])})
	}
	return page
}

// checkPage compares one command's flags with its rows in FLAGS.md: the same
// names, once each, and every default that is not empty or false written in
// backquotes in the default cell.
func checkPage(t *testing.T, cmd string, flags map[string]string, rows []docRow) {
	t.Helper()
	if len(rows) == 0 {
		t.Errorf("FLAGS.md has no section \"## %s\" with flag rows", cmd)
		return
	}
	seen := map[string]bool{}
	for _, r := range rows {
		if seen[r.name] {
			t.Errorf("FLAGS.md lists %s --%s twice", cmd, r.name)
		}
		seen[r.name] = true
		def, ok := flags[r.name]
		switch {
		case !ok:
			t.Errorf("FLAGS.md lists %s --%s, which the command does not have", cmd, r.name)
		case def != "" && def != "false" && def != "?" && !strings.Contains(r.def, "`"+def+"`"):
			t.Errorf("FLAGS.md: %s --%s defaults to `%s`, the page says %q", cmd, r.name, def, r.def)
		}
	}
	var missing []string
	for name := range flags {
		if !seen[name] {
			missing = append(missing, "--"+name)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("FLAGS.md does not list %s %s", cmd, strings.Join(missing, " "))
	}
}

// Every flag of every command is in docs/FLAGS.md with its default, and the
// page lists no flag a command lacks.
func TestFlagsPage(t *testing.T) {
	page := flagsPage(t)
	for i, c := range commands {
		flags, _ := flagsOf(t, i)
		checkPage(t, c.name, flags, page[c.name])
	}
	checkPage(t, "hyperat-demo", demoFlags(t), page["hyperat-demo"])
	for section := range page {
		known := section == "hyperat-demo"
		for _, c := range commands {
			known = known || section == c.name
		}
		if !known {
			t.Errorf("FLAGS.md has flag rows under %q, which is no command", section)
		}
	}
}

// Each command's --help names every flag, shows examples and the exit statuses.
func TestHelpNamesEveryFlag(t *testing.T) {
	for i, c := range commands {
		flags, cmd := flagsOf(t, i)
		for name := range flags {
			if !strings.Contains(cmd.Usage, "--"+name+" ") && !strings.Contains(cmd.Usage, "--"+name+"\n") {
				t.Errorf("%s --help does not describe --%s", c.name, name)
			}
		}
		if !strings.HasPrefix(cmd.Usage, "usage: "+c.name) || !strings.Contains(cmd.Usage, "examples:\n  "+c.name) {
			t.Errorf("%s --help lacks its usage line or examples", c.name)
		}
		words := strings.Join(strings.Fields(cmd.Usage), " ")
		for _, w := range []string{"exit status: 0 done, 1 an error", "2 a mistake in the command line"} {
			if !strings.Contains(words, w) {
				t.Errorf("%s --help lacks %q", c.name, w)
			}
		}
	}
}

// testRef is a test named in a BAD_INPUT.md row: `TestName` (`path/x_test.go`).
var testRef = regexp.MustCompile("`((?:Test|Fuzz)[A-Za-z0-9_]*)` \\(`([A-Za-z0-9_./-]+_test\\.go)`\\)")

// The rows the page must keep, each found by words of its first cell.
var badInputRows = []string{
	"missing", "not ONNX", "unsupported operator", "not an image classifier", "dataset format",
	"labels out of range", "wrong size", "NaN", "eps", "another model", "disk full", "read-only",
}

// Every row of the table in docs/BAD_INPUT.md names at least one test, as
// `TestName` (`path/file_test.go`), and each is a function of that file.
func TestBadInputPage(t *testing.T) {
	root := testutil.Root()
	b, err := os.ReadFile(filepath.Join(root, "docs", "BAD_INPUT.md"))
	if err != nil {
		t.Fatal(err)
	}
	funcs := map[string]map[string]bool{} // file -> declared functions
	declared := func(file, name string) bool {
		if funcs[file] == nil {
			funcs[file] = map[string]bool{}
			f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(root, filepath.FromSlash(file)), nil, 0)
			if err != nil {
				t.Errorf("BAD_INPUT.md names %s: %v", file, err)
				return false
			}
			for _, d := range f.Decls {
				if fd, ok := d.(*ast.FuncDecl); ok && fd.Recv == nil {
					funcs[file][fd.Name.Name] = true
				}
			}
		}
		return funcs[file][name]
	}
	var firstCells []string
	rows := 0
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "|") || strings.HasPrefix(line, "|---") || strings.HasPrefix(line, "| bad input") {
			continue
		}
		rows++
		cells := strings.Split(line, "|")
		firstCells = append(firstCells, cells[1])
		label := strings.TrimSpace(cells[1])
		if i := strings.Index(label, ":"); i > 0 {
			label = label[:i]
		}
		refs := testRef.FindAllStringSubmatch(line, -1)
		if len(refs) == 0 {
			t.Errorf("BAD_INPUT.md: row %q names no test as `TestName` (`path/file_test.go`)", label)
		}
		for _, r := range refs {
			if !declared(r[2], r[1]) {
				t.Errorf("BAD_INPUT.md: row %q names %s, which is not a function of %s", label, r[1], r[2])
			}
		}
	}
	if rows == 0 {
		t.Fatal("BAD_INPUT.md has no table")
	}
	for _, w := range badInputRows {
		found := false
		for _, c := range firstCells {
			found = found || strings.Contains(c, w)
		}
		if !found {
			t.Errorf("BAD_INPUT.md has no row about %q", w)
		}
	}
}
