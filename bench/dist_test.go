package bench

// The exchange of data-parallel tuning, measured on the loopback interface:
// a step of a group of ranks (goroutines of this process, each with its own
// TCP connection to rank 0) whose parts are the gradients of ViT-B/16's
// LoRA factors at rank 8 on qkv, proj, fc1 and fc2 and of its head, as
// hyperat-tune --workers exchanges them. docs/CLUSTER.md models the network
// from these figures.
//
//	go test ./bench -run '^$' -bench DistStep -benchtime 5x

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/hyperat/hyperat/dist"
)

// vitbGradient is the number of values of one micro-batch's contribution
// for ViT-B/16 (12 blocks of width 768, MLP 3072, 10 classes) at LoRA rank
// 8: 8 (in + out) per adapted layer, and the head's weight and bias.
const vitbGradient = 12*8*((768+3*768)+(768+768)+(768+3072)+(3072+768)) + 768*10 + 10

func BenchmarkDistStep(b *testing.B) {
	for _, c := range []struct{ ranks, parts int }{{2, 8}, {8, 8}} {
		b.Run(fmt.Sprintf("ranks=%d/parts=%d", c.ranks, c.parts), func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			addr := ln.Addr().String()
			ln.Close()
			gs := make([]*dist.Group, c.ranks)
			var wg sync.WaitGroup
			for r := range c.ranks {
				wg.Add(1)
				go func() {
					defer wg.Done()
					g, err := dist.Join(dist.Config{Rank: r, Size: c.ranks, Addr: addr, Run: "bench", Timeout: time.Minute}, nil)
					if err != nil {
						b.Error(err)
					}
					gs[r] = g
				}()
			}
			wg.Wait()
			if b.Failed() {
				return
			}
			defer func() {
				for _, g := range gs {
					g.Close()
				}
			}()
			mine := make([][]dist.Part, c.ranks)
			for k := range c.parts {
				d := make([]float32, vitbGradient)
				for i := range d {
					d[i] = float32(i%97) * 1e-3
				}
				mine[k%c.ranks] = append(mine[k%c.ranks], dist.Part{Index: k, Data: d, Stats: []float64{1}})
			}
			b.ResetTimer()
			for s := range b.N {
				var wg sync.WaitGroup
				for r, g := range gs {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if _, err := g.Step(int64(s), mine[r], c.parts); err != nil {
							b.Error(err)
						}
					}()
				}
				wg.Wait()
			}
			// bytes through rank 0's connections per step: the other ranks'
			// parts in, the sum out to each of them
			remote := c.parts - len(mine[0])
			bytes := float64(4 * vitbGradient * (remote + c.ranks - 1))
			b.ReportMetric(bytes/1e6, "MB/step")
			b.ReportMetric(bytes/1e6/(b.Elapsed().Seconds()/float64(b.N)), "MB/s")
		})
	}
}
