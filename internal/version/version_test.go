package version

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	set := func(kv ...string) []debug.BuildSetting {
		var s []debug.BuildSetting
		for i := 0; i < len(kv); i += 2 {
			s = append(s, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return s
	}
	cases := []struct {
		version string
		s       []debug.BuildSetting
		want    string
	}{
		{"v1.2.3", set("vcs.revision", "0123456789abcdef0123"), "v1.2.3"},
		{"(devel)", set("vcs.revision", "0123456789abcdef0123", "vcs.modified", "false"), "devel 0123456789ab"},
		{"(devel)", set("vcs.revision", "0123456789abcdef0123", "vcs.modified", "true"), "devel 0123456789ab+changes"},
		{"(devel)", nil, "devel"},
		{"", nil, "devel"},
	}
	for _, c := range cases {
		bi := &debug.BuildInfo{Main: debug.Module{Path: "github.com/hyperat/hyperat", Version: c.version}, Settings: c.s}
		if got := fromBuildInfo(bi); got != c.want {
			t.Errorf("version %q, settings %v: %q, want %q", c.version, c.s, got, c.want)
		}
	}
	if String() == "" {
		t.Error("String() is empty")
	}
}
