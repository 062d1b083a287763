// Package sysmem is the memory budget of a command: how much the machine
// (or the process's cgroup) can give it, sizes written as people write
// them, what the process holds now, and the Go runtime's limit.
package sysmem

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
)

// Share is the part of the available memory a command takes by default: the
// rest stays for the system and whatever else runs.
const Share = 0.8

// Default is the default budget: Share of the memory available now (Linux's
// MemAvailable, less within a cgroup's limit), and a line that says where it
// comes from.
func Default() (int64, string, error) {
	avail, from, err := Available("/proc/meminfo", "/sys/fs/cgroup")
	if err != nil {
		return 0, "", err
	}
	return int64(Share * float64(avail)), fmt.Sprintf("%.0f%% of the %s available (%s)", 100*Share, Format(avail), from), nil
}

// Available is the memory available to this process: MemAvailable of the
// meminfo file, or less when a cgroup's limit (v2 memory.max, or v1
// memory/memory.limit_in_bytes, under cgroupDir) leaves less; it also says
// which.
func Available(meminfo, cgroupDir string) (int64, string, error) {
	avail, err := memAvailable(meminfo)
	if err != nil {
		return 0, "", fmt.Errorf("the machine's memory: %v; give --max-memory", err)
	}
	from := "MemAvailable"
	for _, f := range [][2]string{{"memory.max", "memory.current"},
		{"memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes"}} {
		limit, ok1 := readBytes(cgroupDir + "/" + f[0])
		used, ok2 := readBytes(cgroupDir + "/" + f[1])
		if ok1 && ok2 && limit-used < avail {
			avail, from = max(limit-used, 0), "cgroup limit"
		}
		if ok1 {
			break
		}
	}
	return avail, from, nil
}

// memAvailable reads MemAvailable (kB) from a meminfo file.
func memAvailable(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) >= 2 && fs[0] == "MemAvailable:" {
			kb, err := strconv.ParseInt(fs[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%s: MemAvailable %q", path, fs[1])
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("%s has no MemAvailable", path)
}

// readBytes reads a cgroup file holding a byte count ("max": no limit).
func readBytes(path string) (int64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	// v1 writes "no limit" as a huge number
	return n, err == nil && n < 1<<60
}

var units = map[string]float64{"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}

// Parse reads a size: a number of bytes, or with a binary unit K, M, G or T
// (also written KiB, KB, ...: 1G is 2^30 bytes), such as 12G or 1.5GiB.
func Parse(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "b"), "i")
	i := strings.IndexFunc(t, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	if i < 0 {
		i = len(t)
	}
	u, ok := units[strings.TrimSpace(t[i:])]
	v, err := strconv.ParseFloat(t[:i], 64)
	if !ok || err != nil || !(v > 0) || v*u > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q is not a size: give bytes or a number with K, M, G or T (such as 12G)", s)
	}
	return int64(v * u), nil
}

// Format writes n bytes in the largest binary unit under n, such as 12.3 GiB.
func Format(n int64) string {
	for _, u := range []struct {
		name string
		size float64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if float64(n) >= u.size {
			return fmt.Sprintf("%.1f %s", float64(n)/u.size, u.name)
		}
	}
	return fmt.Sprintf("%d B", n)
}

// InUse is what the process holds now, after a collection: its live heap
// and the runtime's own memory (stacks, spans, collector metadata).
func InUse() int64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc + m.StackInuse + m.MSpanInuse + m.MCacheInuse + m.GCSys + m.OtherSys + m.BuckHashSys)
}

// Room is what a plan may add to what the process holds now (InUse) within
// budget: four fifths of it, less what is held. The fifth left over is the
// collector's: garbage waits for it, and Limit keeps it from growing past.
func Room(budget int64) int64 { return budget*4/5 - InUse() }

// Limit makes the Go runtime keep the process's memory under nine tenths of
// budget, collecting more often as it nears it (the last tenth absorbs
// what the runtime overshoots); it returns the previous limit, as
// debug.SetMemoryLimit does.
func Limit(budget int64) int64 {
	return debug.SetMemoryLimit(budget - budget/10)
}
