// Package loss holds the losses of a classifier's logits that the attacks,
// the defenses and the commands compute outside the engine, each with its
// gradient with respect to the logits in closed form, in float64.
//
// Each rule is written once, for one row of logits (one sample): z has one
// value per class, and a rule returns the loss and, when grad is not nil,
// writes dL/dz into it. The batch forms (Batch, BatchPair, MeanCE, MeanKL,
// MeanMART) apply the rules to logits [N, K] and return the gradient as a
// float32 tensor of the logits' shape, the cotangent the engine's
// vector-Jacobian programs take.
package loss

import (
	"math"
	"slices"
)

// dlrEps keeps the DLR denominators away from zero, as in Croce & Hein (2020).
const dlrEps = 1e-12

// The fewest classes the DLR losses can be computed for: DLR's denominator
// reads the 3rd highest logit, DLRTargeted's the 4th (AutoAttack's
// check_n_classes warns below these counts, and its DLR losses fail there).
const (
	DLRMinClasses         = 3
	DLRTargetedMinClasses = 4
)

// martEps keeps MART's log(1.0001 - max_{k != y} p_k) finite (Wang et al. 2020).
const martEps = 1.0001

// logSumExp is log sum_k exp(z_k), computed from the largest z_k.
func logSumExp(z []float64) float64 {
	m := slices.Max(z)
	s := 0.0
	for _, v := range z {
		s += math.Exp(v - m)
	}
	return m + math.Log(s)
}

// LogSoftmax writes log softmax(z) into out.
func LogSoftmax(z, out []float64) {
	lse := logSumExp(z)
	for k, v := range z {
		out[k] = v - lse
	}
}

// Softmax writes softmax(z) = exp(z - log sum exp(z)) into p, the
// probabilities every rule here computes.
func Softmax(z, p []float64) {
	lse := logSumExp(z)
	for k, v := range z {
		p[k] = math.Exp(v - lse)
	}
}

// CrossEntropy is -log softmax(z)[y]; dL/dz = softmax(z) - onehot(y).
func CrossEntropy(z []float64, y int, grad []float64) float64 {
	lse := logSumExp(z)
	if grad != nil {
		for k, v := range z {
			grad[k] = math.Exp(v - lse)
		}
		grad[y]--
	}
	return lse - z[y]
}

// Margin is the Carlini-Wagner margin max_{k != y} z_k - z_y, positive where
// the sample is misclassified; dL/dz = onehot(k*) - onehot(y) with k* the
// first maximizing k.
func Margin(z []float64, y int, grad []float64) float64 {
	k := MaxOther(z, y)
	if grad != nil {
		clear(grad)
		grad[k] = 1
		grad[y] = -1
	}
	return z[k] - z[y]
}

// DLR is the untargeted difference-of-logits ratio of Croce & Hein (2020):
//
//	-(z_y - max_{k != y} z_k) / (z_pi1 - z_pi3 + 1e-12)
//
// with z_pi1 >= z_pi2 >= ... the sorted logits. It needs at least
// DLRMinClasses (3) classes, and panics with fewer.
// The gradient treats the sort order as fixed (ties broken by class index).
func DLR(z []float64, y int, grad []float64) float64 {
	o := Order(z)
	k := MaxOther(z, y)
	num := z[y] - z[k]
	den := z[o[0]] - z[o[2]] + dlrEps
	if grad != nil {
		// L = -num/den: dL/dnum = -1/den, dL/dden = num/den^2
		clear(grad)
		a, b := -1/den, num/(den*den)
		grad[y] += a
		grad[k] -= a
		grad[o[0]] += b
		grad[o[2]] -= b
	}
	return -num / den
}

// DLRTargeted is the targeted difference-of-logits ratio of Croce & Hein (2020):
//
//	-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4)/2 + 1e-12)
//
// It needs at least DLRTargetedMinClasses (4) classes, and panics with
// fewer. The gradient treats the sort order as fixed.
func DLRTargeted(z []float64, y, t int, grad []float64) float64 {
	o := Order(z)
	num := z[y] - z[t]
	den := z[o[0]] - (z[o[2]]+z[o[3]])/2 + dlrEps
	if grad != nil {
		clear(grad)
		a, b := -1/den, num/(den*den)
		grad[y] += a
		grad[t] -= a
		grad[o[0]] += b
		grad[o[2]] -= b / 2
		grad[o[3]] -= b / 2
	}
	return -num / den
}

// KL is the Kullback-Leibler divergence KL(pRef || softmax(z)) =
// sum_k pRef_k (log pRef_k - log softmax(z)_k), TRADES' inner loss with pRef
// the clean sample's probabilities (a distribution: it sums to 1);
// dL/dz = softmax(z) - pRef. Terms with pRef_k = 0 count as 0.
func KL(pRef, z []float64, grad []float64) float64 {
	lse := logSumExp(z)
	l := 0.0
	for k, p := range pRef {
		if p > 0 {
			l += p * (math.Log(p) - (z[k] - lse))
		}
	}
	if grad != nil {
		for k, v := range z {
			grad[k] = math.Exp(v-lse) - pRef[k]
		}
	}
	return l
}

// KLLogits is KL(softmax(p) || softmax(q)) of two rows of logits, TRADES'
// regularizer, with the gradients for both: dL/dq = softmax(q) - softmax(p)
// (as KL's) and dL/dp_j = P_j (log P_j - log Q_j - KL). gp and gq may be nil.
func KLLogits(p, q, gp, gq []float64) float64 {
	k := len(p)
	lp, lq := make([]float64, k), make([]float64, k)
	LogSoftmax(p, lp)
	LogSoftmax(q, lq)
	kl := 0.0
	for j := range lp {
		kl += math.Exp(lp[j]) * (lp[j] - lq[j])
	}
	for j := range lp {
		pj := math.Exp(lp[j])
		if gq != nil {
			gq[j] = math.Exp(lq[j]) - pj
		}
		if gp != nil {
			gp[j] = pj * (lp[j] - lq[j] - kl)
		}
	}
	return kl
}

// MART is the objective of MART (Wang et al. 2020) for one sample's clean
// logits zc and adversarial logits za:
//
//	CE(za, y) - log(1.0001 - max_{k != y} softmax(za)_k)
//	+ beta KL(softmax(zc) || softmax(za)) (1 - softmax(zc)_y)
//
// with its gradients gc = dL/dzc and ga = dL/dza (both required).
func MART(zc, za []float64, y int, beta float64, gc, ga []float64) float64 {
	k := len(za)
	// boosted cross-entropy on the adversarial example:
	// d(-log(1.0001 - pa_m))/dza_j = pa_m (onehot_m - pa_j) / (1.0001 - pa_m)
	pa := make([]float64, k)
	LogSoftmax(za, pa)
	for j := range pa {
		pa[j] = math.Exp(pa[j])
	}
	m := MaxOther(pa, y)
	bce := CrossEntropy(za, y, ga) - math.Log(martEps-pa[m])
	c := pa[m] / (martEps - pa[m])
	for j := range ga {
		ga[j] -= c * pa[j]
	}
	ga[m] += c
	// the KL term weighted by w = 1 - pc_y: d(w)/dzc_j = -pc_y (onehot_y - pc_j)
	gkc, gka := make([]float64, k), make([]float64, k)
	kl := KLLogits(zc, za, gkc, gka)
	lc := make([]float64, k)
	LogSoftmax(zc, lc)
	py := math.Exp(lc[y])
	w := 1 - py
	for j := range gc {
		dw := py * math.Exp(lc[j])
		if j == y {
			dw -= py
		}
		ga[j] += beta * w * gka[j]
		gc[j] = beta * (w*gkc[j] + kl*dw)
	}
	return bce + beta*kl*w
}

// MaxOther is the first k != y with the largest z_k.
func MaxOther(z []float64, y int) int {
	b := -1
	for k, v := range z {
		if k != y && (b < 0 || v > z[b]) {
			b = k
		}
	}
	return b
}

// Order is the class indices sorted by decreasing logit, ties by index: the
// predicted class first, then the runners-up (the attacks' target classes).
func Order(z []float64) []int {
	o := make([]int, len(z))
	for i := range o {
		o[i] = i
	}
	slices.SortStableFunc(o, func(a, b int) int {
		switch {
		case z[a] > z[b]:
			return -1
		case z[a] < z[b]:
			return 1
		}
		return 0
	})
	return o
}
