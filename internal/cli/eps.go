package cli

import (
	"fmt"
	"strconv"
	"strings"
)

// ParseEps reads a perturbation radius written as a decimal ("0.1") or a
// fraction ("8/255"), and checks that it lies in (0, 1].
func ParseEps(s string) (float64, error) {
	var v float64
	if num, den, ok := strings.Cut(strings.TrimSpace(s), "/"); ok {
		a, err1 := strconv.ParseFloat(strings.TrimSpace(num), 64)
		b, err2 := strconv.ParseFloat(strings.TrimSpace(den), 64)
		if err1 != nil || err2 != nil || b == 0 {
			return 0, fmt.Errorf("--eps %q: want a number such as 0.1 or a fraction such as 8/255", s)
		}
		v = a / b
	} else {
		a, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return 0, fmt.Errorf("--eps %q: want a number such as 0.1 or a fraction such as 8/255", s)
		}
		v = a
	}
	if !(v > 0 && v <= 1) {
		return 0, fmt.Errorf("--eps %s: must be in (0, 1] (pixels are in [0, 1])", s)
	}
	return v, nil
}
