package kernels

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestTune alternates configurations and reports the best rate of each.
// TUNE="kc,nc;kc,nc" TUNESHAPES="NN:m,k,n;..."
func TestTune(t *testing.T) {
	cfgs := os.Getenv("TUNE")
	if cfgs == "" {
		t.Skip()
	}
	var shapes []benchShape
	for _, s := range strings.Split(os.Getenv("TUNESHAPES"), ";") {
		p := strings.Split(s, ":")
		d := strings.Split(p[1], ",")
		m, _ := strconv.Atoi(d[0])
		k, _ := strconv.Atoi(d[1])
		n, _ := strconv.Atoi(d[2])
		shapes = append(shapes, benchShape{transA: p[0][0] == 'T', transB: p[0][1] == 'T', m: m, k: k, n: n})
	}
	reps, _ := strconv.Atoi(os.Getenv("TUNEREPS"))
	if reps == 0 {
		reps = 20
	}
	type cfg struct {
		kc, nc int
		pack   string
	}
	var cs []cfg
	for _, c := range strings.Split(cfgs, ";") {
		p := strings.Split(c, ",")
		kc, _ := strconv.Atoi(p[0])
		nc, _ := strconv.Atoi(p[1])
		pk := ""
		if len(p) > 2 {
			pk = p[2]
		}
		cs = append(cs, cfg{kc, nc, pk})
	}
	for _, s := range shapes {
		r := rand.New(rand.NewPCG(1, 1))
		a := randSlice(r, s.m*s.k)
		bm := randSlice(r, s.k*s.n)
		c := randSlice(r, s.m*s.n)
		best := make([]time.Duration, len(cs))
		for i := range best {
			best[i] = time.Hour
		}
		for rep := 0; rep < reps; rep++ {
			for i, cf := range cs {
				v := *activeSgemm
				v.kc, v.nc = cf.kc, cf.nc
				lda, ldb := s.lds()
				g := gemmArgs{transA: s.transA, transB: s.transB, m: s.m, n: s.n, k: s.k, alpha: 1, a: a, lda: lda, b: bm, ldb: ldb, c: c, ldc: s.n}
				t0 := time.Now()
				v.gemm(&g, true)
				best[i] = min(best[i], time.Since(t0))
			}
		}
		line := s.String()
		for i, cf := range cs {
			line += fmt.Sprintf("  %v:%.1f", cf, s.flops()/best[i].Seconds()/1e9)
		}
		fmt.Println(line)
	}
}
