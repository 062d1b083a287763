package app

import (
	"testing"

	"github.com/hyperat/hyperat/attack"
)

// A slow run's pace is seconds per iteration, not "0.00 it/s".
func TestPace(t *testing.T) {
	for _, c := range []struct {
		rate float64
		want string
	}{
		{12.345, "12.35 it/s"},
		{1, "1.00 it/s"},
		{0.5, "2.0 s/it"},
		{1.0 / 354.5, "354.5 s/it"},
	} {
		if got := pace(c.rate); got != c.want {
			t.Errorf("pace(%v) = %q, want %q", c.rate, got, c.want)
		}
	}
}

// An evaluation where the model gets no image right says so.
func TestNoneRight(t *testing.T) {
	right := attack.Record{Label: 3, CleanPred: 3}
	wrong := attack.Record{Label: 3, CleanPred: 9}
	for _, c := range []struct {
		recs []attack.Record
		want bool
	}{
		{nil, false},
		{[]attack.Record{wrong, wrong}, true},
		{[]attack.Record{wrong, right}, false},
	} {
		if got := noneRight(c.recs); got != c.want {
			t.Errorf("%d records: %v, want %v", len(c.recs), got, c.want)
		}
	}
}
