//go:build !amd64 || purego

package cpu

// probes reports whether detect reads the CPU: this build has no CPUID.
const probes = false

// detect reports no feature: without amd64 or with the purego build tag
// there is no assembly to run.
func detect() features { return features{} }
