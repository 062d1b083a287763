// Package version is the one place the hyperat tools' version comes from:
// the build information the Go toolchain records in every binary.
package version

import (
	"runtime/debug"
	"strings"
)

// String is the version of the tools: the module's version when it was
// built as a dependency at a tagged version (go install ...@v1.2.3), else
// "devel" followed by the commit the binary was built from and "+changes"
// when its work tree had uncommitted changes (as Go records them with
// -buildvcs, the default in a git checkout); plain "devel" when Go recorded
// neither (go test, go run outside a checkout).
func String() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	return fromBuildInfo(bi)
}

func fromBuildInfo(bi *debug.BuildInfo) string {
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	parts := []string{"devel"}
	if rev != "" {
		parts = append(parts, rev[:min(len(rev), 12)])
		if modified == "true" {
			parts[1] += "+changes"
		}
	}
	return strings.Join(parts, " ")
}
