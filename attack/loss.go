package attack

import (
	"math"
	"slices"
)

// Losses of one sample's logits z (length K, the number of classes), computed
// in float64. Each returns the loss and, when grad is not nil, writes the
// gradient dL/dz into grad (length K) in closed form. Attacks maximize them.

// dlrEps keeps the DLR denominators away from zero, as in Croce & Hein (2020).
const dlrEps = 1e-12

// CrossEntropy is -log softmax(z)[y]; dL/dz = softmax(z) - onehot(y).
func CrossEntropy(z []float64, y int, grad []float64) float64 {
	m := slices.Max(z)
	s := 0.0
	for _, v := range z {
		s += math.Exp(v - m)
	}
	lse := m + math.Log(s)
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
	k := maxOther(z, y)
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
// with z_pi1 >= z_pi2 >= ... the sorted logits. It needs at least 3 classes.
// The gradient treats the sort order as fixed (ties broken by class index).
func DLR(z []float64, y int, grad []float64) float64 {
	o := order(z)
	k := maxOther(z, y)
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
// It needs at least 4 classes. The gradient treats the sort order as fixed.
func DLRTargeted(z []float64, y, t int, grad []float64) float64 {
	o := order(z)
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
	m := slices.Max(z)
	s := 0.0
	for _, v := range z {
		s += math.Exp(v - m)
	}
	lse := m + math.Log(s)
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

// Softmax writes softmax(z) into p.
func Softmax(z, p []float64) {
	m := slices.Max(z)
	s := 0.0
	for k, v := range z {
		p[k] = math.Exp(v - m)
		s += p[k]
	}
	for k := range p {
		p[k] /= s
	}
}

// maxOther is the first k != y with the largest z_k.
func maxOther(z []float64, y int) int {
	b := -1
	for k, v := range z {
		if k != y && (b < 0 || v > z[b]) {
			b = k
		}
	}
	return b
}

// order is the class indices sorted by decreasing logit, ties by index.
func order(z []float64) []int {
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

// argmax is the first index of the largest value (the prediction).
func argmax(z []float32) int {
	b := 0
	for i, v := range z {
		if v > z[b] {
			b = i
		}
	}
	return b
}
