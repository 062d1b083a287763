package hyperat

import (
	"math"

	"github.com/hyperat/hyperat/attack"
	"github.com/hyperat/hyperat/graph"
)

// Losses of the logits with their gradients dL/dlogits in closed form,
// computed in float64. Each takes logits [N, K] and returns the batch mean
// and the gradient (same shape as the logits).

// logSoftmax of one row.
func logSoftmax(z []float32, out []float64) {
	m := math.Inf(-1)
	for _, v := range z {
		m = max(m, float64(v))
	}
	s := 0.0
	for _, v := range z {
		s += math.Exp(float64(v) - m)
	}
	ls := m + math.Log(s)
	for i, v := range z {
		out[i] = float64(v) - ls
	}
}

func rows(t *graph.Tensor) (n, k int) { return t.Shape[0], t.Shape[1] }

// crossEntropy is mean_i -log softmax(z_i)[y_i]; d/dz = (p - onehot) / N
// (attack.CrossEntropy per row).
func crossEntropy(z *graph.Tensor, y []int) (float64, *graph.Tensor) {
	n, k := rows(z)
	g := graph.NewTensor(graph.Float32, z.Shape)
	zi, gi := make([]float64, k), make([]float64, k)
	loss := 0.0
	for i := 0; i < n; i++ {
		for j, v := range z.F[i*k : (i+1)*k] {
			zi[j] = float64(v)
		}
		loss += attack.CrossEntropy(zi, y[i], gi)
		for j, d := range gi {
			g.F[i*k+j] = float32(d / float64(n))
		}
	}
	return loss / float64(n), g
}

// klDiv is mean_i KL(softmax(p_i) || softmax(q_i)) (PyTorch's "batchmean"),
// with gradients for both logits: d/dq = (softmax(q) - softmax(p)) / N and
// d/dp_j = P_j (log P_j - log Q_j - KL_i) / N.
func klDiv(p, q *graph.Tensor) (float64, *graph.Tensor, *graph.Tensor) {
	n, k := rows(p)
	gp := graph.NewTensor(graph.Float32, p.Shape)
	gq := graph.NewTensor(graph.Float32, q.Shape)
	lp, lq := make([]float64, k), make([]float64, k)
	total := 0.0
	for i := 0; i < n; i++ {
		logSoftmax(p.F[i*k:(i+1)*k], lp)
		logSoftmax(q.F[i*k:(i+1)*k], lq)
		kl := 0.0
		for j := 0; j < k; j++ {
			kl += math.Exp(lp[j]) * (lp[j] - lq[j])
		}
		total += kl
		for j := 0; j < k; j++ {
			pj := math.Exp(lp[j])
			gq.F[i*k+j] = float32((math.Exp(lq[j]) - pj) / float64(n))
			gp.F[i*k+j] = float32(pj * (lp[j] - lq[j] - kl) / float64(n))
		}
	}
	return total / float64(n), gp, gq
}

// martLoss is MART's objective (Wang et al. 2020) for clean logits zc and
// adversarial logits za:
//
//	mean_i [ CE(za_i, y_i) - log(1.0001 - max_{k != y} softmax(za_i)_k) ]
//	+ beta * mean_i [ KL(softmax(zc_i) || softmax(za_i)) * (1 - softmax(zc_i)_y) ]
//
// returning dL/dzc and dL/dza.
func martLoss(zc, za *graph.Tensor, y []int, beta float64) (float64, *graph.Tensor, *graph.Tensor) {
	n, k := rows(za)
	gc := graph.NewTensor(graph.Float32, zc.Shape)
	ga := graph.NewTensor(graph.Float32, za.Shape)
	lc, la := make([]float64, k), make([]float64, k)
	inv := 1 / float64(n)
	total := 0.0
	for i := 0; i < n; i++ {
		logSoftmax(zc.F[i*k:(i+1)*k], lc)
		logSoftmax(za.F[i*k:(i+1)*k], la)
		yi := y[i]
		// boosted cross-entropy on the adversarial example
		m := -1
		for j := 0; j < k; j++ {
			if j != yi && (m < 0 || la[j] > la[m]) {
				m = j
			}
		}
		pm := math.Exp(la[m])
		bce := -la[yi] - math.Log(1.0001-pm)
		// d(-log pa_y)/dza = pa - onehot; d(-log(1.0001 - pa_m))/dza_j = pa_m (onehot_m - pa_j) / (1.0001 - pa_m)
		c := pm / (1.0001 - pm)
		for j := 0; j < k; j++ {
			pa := math.Exp(la[j])
			d := pa
			if j == yi {
				d--
			}
			om := 0.0
			if j == m {
				om = 1
			}
			d += c * (om - pa)
			ga.F[i*k+j] = float32(d * inv)
		}
		// weighted KL
		kl := 0.0
		for j := 0; j < k; j++ {
			kl += math.Exp(lc[j]) * (lc[j] - la[j])
		}
		py := math.Exp(lc[yi])
		w := 1 - py
		total += bce + beta*kl*w
		for j := 0; j < k; j++ {
			pc, pa := math.Exp(lc[j]), math.Exp(la[j])
			// d(kl)/dza_j = pa_j - pc_j; d(kl)/dzc_j = pc_j (lc_j - la_j - kl)
			// d(w)/dzc_j = -py (onehot_y - pc_j)
			oy := 0.0
			if j == yi {
				oy = 1
			}
			ga.F[i*k+j] += float32(beta * w * (pa - pc) * inv)
			gc.F[i*k+j] = float32(beta * (w*pc*(lc[j]-la[j]-kl) + kl*(-py*(oy-pc))) * inv)
		}
	}
	return total * inv, gc, ga
}
