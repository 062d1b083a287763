package app

import (
	"fmt"
	"runtime/debug"

	"github.com/hyperat/hyperat/attack"
	"github.com/hyperat/hyperat/compile"
	"github.com/hyperat/hyperat/graph"
	"github.com/hyperat/hyperat/internal/cli"
	"github.com/hyperat/hyperat/internal/sysmem"
	"github.com/hyperat/hyperat/model"
)

// passSize is the images per pass of hyperat-eval within the memory budget
// (--max-memory flag, or the default share): at most batch, and exactly a
// fixed batch fixed (0: none) the model runs at. It says what it chose and
// sets the Go runtime's limit; restore puts the previous limit back. A
// budget that cannot hold one pass is an error, before any work.
func passSize(c *cli.Command, m *model.Classifier, flag string, batch, fixed int) (pass int, restore func(), err error) {
	budget, previous, err := memoryBudget(c, flag)
	if err != nil {
		return 0, nil, err
	}
	restore = func() { debug.SetMemoryLimit(previous) }
	held := sysmem.InUse()
	room := sysmem.Room(budget)
	if fixed > 0 {
		need, err := m.Footprint(fixed)
		if err != nil || need <= room {
			return fixed, restore, err
		}
		restore()
		return 0, nil, fmt.Errorf("a memory budget of %s cannot hold one pass of the model's fixed batch of %d: the model and the images hold %s, and the pass needs %s more; give --max-memory more",
			sysmem.Format(budget), fixed, sysmem.Format(held), sysmem.Format(need))
	}
	pass, need, err := compile.LargestBatch(room, batch, m.Footprint)
	if err != nil {
		restore()
		return 0, nil, err
	}
	if pass == 0 {
		restore()
		return 0, nil, fmt.Errorf("a memory budget of %s cannot hold even one image per pass: the model and the images hold %s, and one image needs %s more (the budget keeps a fifth for the collector); give --max-memory more",
			sysmem.Format(budget), sysmem.Format(held), sysmem.Format(need))
	}
	if pass < batch {
		fmt.Fprintf(c.Stdout, "memory    passes of %d images, not --batch %d: about %s besides the %s held\n", pass, batch, sysmem.Format(need), sysmem.Format(held))
	} else {
		fmt.Fprintf(c.Stdout, "memory    passes of %d images (--batch): about %s besides the %s held\n", pass, sysmem.Format(need), sysmem.Format(held))
	}
	return pass, restore, nil
}

// runPasses runs the evaluation on the images x (labels y, dataset indices
// ids) in passes of at most pass images, and joins what they return: since
// every image draws from its own streams, the records and examples are
// those of one run on all of them.
func runPasses(ev *attack.Evaluation, m attack.Model, x *graph.Tensor, y, ids []int, pass int, report func(int)) ([]attack.Record, []*graph.Tensor, error) {
	n, d := x.Shape[0], graph.Numel(x.Shape[1:])
	var recs []attack.Record
	var advs []*graph.Tensor
	for lo := 0; lo < n; lo += pass {
		hi := min(lo+pass, n)
		xb := graph.F32(append([]int{hi - lo}, x.Shape[1:]...), x.F[lo*d:hi*d])
		r, a, err := ev.Run(m, xb, y[lo:hi], ids[lo:hi], report)
		if err != nil {
			return nil, nil, err
		}
		recs = append(recs, r...)
		if advs == nil {
			advs = make([]*graph.Tensor, len(a))
			for k, t := range a {
				if t != nil {
					advs[k] = graph.NewTensor(graph.Float32, x.Shape)
				}
			}
		}
		for k, t := range a {
			if t != nil {
				copy(advs[k].F[lo*d:], t.F)
			}
		}
	}
	return recs, advs, nil
}
