package bench

import (
	"testing"

	"github.com/hyperat/hyperat/kernels"
)

// The schedule hands tasks out in order to the first free goroutine and
// adds the cost of the parallel call only when it uses more than one.
func TestSchedule(t *testing.T) {
	d := Dispatch{Base: 10, PerHelper: 1}
	for _, c := range []struct {
		tasks   []int64
		threads int
		want    float64
	}{
		{[]int64{3, 1, 1, 1}, 2, 3 + 10},     // 3 | 1+1+1
		{[]int64{1, 1, 1, 3}, 2, 4 + 10},     // 1+1 | 1+3: in order, not sorted
		{[]int64{2, 2, 2, 2}, 4, 2 + 10 + 2}, // two helpers beyond the first
		{[]int64{2, 2, 2, 2}, 1, 8},          // one core: no dispatch
		{[]int64{5}, 8, 5},                   // one task
		{[]int64{1, 1, 1}, 64, 1 + 10 + 1},   // at most one goroutine per task
		{nil, 4, 0},
	} {
		if got := Schedule(c.tasks, c.threads, d); got != c.want {
			t.Errorf("Schedule(%v, %d) = %g, want %g", c.tasks, c.threads, got, c.want)
		}
	}
	s := NewSegment("x", 100, []kernels.TraceRegion{{Start: 10, End: 50, Tasks: []int64{12, 22}, Threads: 2}}, 2)
	// serial: 100 - 2 (the segment's clock) - 2 (the call's) - 40 (the call) = 56; tasks 10 and 20
	if s.Serial != 56 || s.CPU != 86 || s.Regions[0].Tasks[1] != 20 {
		t.Errorf("segment: serial %d, CPU %d, tasks %v", s.Serial, s.CPU, s.Regions[0].Tasks)
	}
	if got := s.Predict(2, d); got != 56+20+10 {
		t.Errorf("Predict(2) = %g, want %d", got, 56+20+10)
	}
	other := NewSegment("x", 90, []kernels.TraceRegion{{Start: 10, End: 50, Tasks: []int64{14, 20}, Threads: 2}}, 2)
	least, ok := Least([][]Segment{{s}, {other}})
	if !ok || least[0].Serial != 46 || least[0].Regions[0].Tasks[0] != 10 || least[0].Regions[0].Tasks[1] != 18 || least[0].CPU != 74 {
		t.Errorf("Least: %+v, %v", least, ok)
	}
	if _, ok := Least([][]Segment{{s}, {s, s}}); ok {
		t.Error("Least merged runs of different lengths")
	}
}
