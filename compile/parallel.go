package compile

import "github.com/hyperat/hyperat/kernels"

// parallel runs body over [0, n) split into chunks of at least grain items on
// all cores. Each item is computed by exactly one call, so results do not
// depend on the number of cores. Small n runs on the caller alone. body should
// be made once per kernel (not per call) so that running allocates nothing.
func parallel(n, grain int, body func(lo, hi int)) {
	if n <= grain {
		body(0, n)
		return
	}
	kernels.ParallelFor(n, body)
}
