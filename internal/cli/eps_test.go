package cli

import (
	"math"
	"testing"
)

func TestParseEps(t *testing.T) {
	for s, want := range map[string]float64{"0.1": 0.1, "8/255": 8.0 / 255, " 4 / 255 ": 4.0 / 255, "1": 1} {
		got, err := ParseEps(s)
		if err != nil || math.Abs(got-want) > 1e-15 {
			t.Errorf("ParseEps(%q) = %g, %v; want %g", s, got, err, want)
		}
	}
	for _, s := range []string{"0", "-0.1", "1.5", "8/0", "abc", "", "NaN", "1/2/3"} {
		if _, err := ParseEps(s); err == nil {
			t.Errorf("ParseEps(%q) accepted", s)
		}
	}
}
