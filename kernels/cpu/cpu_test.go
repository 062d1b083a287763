package cpu

import (
	"os"
	"runtime"
	"strings"
	"testing"
)

func TestOff(t *testing.T) {
	t.Setenv(NoAVX512, "1")
	t.Setenv(NoAVX2, "0")
	t.Setenv(NoAVX512BF16, "1")
	if !Off(NoAVX512) || Off(NoAVX2) || !Off(NoAVX512BF16) || Off("") {
		t.Errorf("Off(%s=1, %s=0, %s=1, \"\") = %v, %v, %v, %v; want true, false, true, false",
			NoAVX512, NoAVX2, NoAVX512BF16, Off(NoAVX512), Off(NoAVX2), Off(NoAVX512BF16), Off(""))
	}
}

// TestFeatures checks that AVX-512 implies AVX2+FMA and, on Linux, that the
// features agree with the flags the kernel reports in /proc/cpuinfo (which
// it clears for instruction sets whose register state it does not save).
func TestFeatures(t *testing.T) {
	t.Logf("AVX2FMA %v, AVX512 %v, AVX512BF16 %v", AVX2FMA(), AVX512(), AVX512BF16())
	if AVX512() && !AVX2FMA() {
		t.Error("AVX512 without AVX2FMA")
	}
	if AVX512BF16() && !AVX512() {
		t.Error("AVX512BF16 without AVX512")
	}
	if detect() != detected {
		t.Error("a second detection differs from the first")
	}
	if runtime.GOOS != "linux" || !probes {
		return
	}
	info, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		t.Skip(err)
	}
	flags := map[string]bool{}
	for _, line := range strings.Split(string(info), "\n") {
		if name, list, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "flags" {
			for _, f := range strings.Fields(list) {
				flags[f] = true
			}
			break
		}
	}
	avx2FMA := flags["avx"] && flags["avx2"] && flags["fma"]
	if AVX2FMA() != avx2FMA {
		t.Errorf("AVX2FMA() = %v, /proc/cpuinfo says %v", AVX2FMA(), avx2FMA)
	}
	avx512 := avx2FMA && flags["avx512f"]
	if AVX512() != avx512 {
		t.Errorf("AVX512() = %v, /proc/cpuinfo says %v", AVX512(), avx512)
	}
	if want := avx512 && flags["avx512bw"] && flags["avx512_bf16"]; AVX512BF16() != want {
		t.Errorf("AVX512BF16() = %v, /proc/cpuinfo says %v", AVX512BF16(), want)
	}
}
