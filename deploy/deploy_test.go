// Package deploy holds the Kubernetes manifests that run hyperat on a
// cluster (docs/CLUSTER.md); its test checks them against the Kubernetes API
// types, which only the test imports.
package deploy

// The manifests decode strictly (a misspelt field fails) into the API types;
// the tuning Job is an Indexed Job of N pods that find worker 0 through the
// headless Service and run hyperat-tune --workers N, restarting as a group;
// the evaluation Job is a valid Indexed Job whose pod I runs hyperat-eval
// --shard I/N with N its completions, its paths lie on the volume, and the
// merge Job reads exactly the N reports the shards write; hyperat-eval
// accepts both command lines.

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/hyperat/hyperat/internal/app"
	"github.com/hyperat/hyperat/internal/cli"
)

const indexVar = "$(JOB_COMPLETION_INDEX)"

// decode reads a manifest of one object strictly into T.
func decode[T any](t *testing.T, file string) *T {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var v T
	if err := yaml.UnmarshalStrict(b, &v); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return &v
}

// Every manifest is one object of a kind the API types know, decoded
// strictly.
func TestManifestsDecode(t *testing.T) {
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests (%v)", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(b, &tm); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		switch tm.APIVersion + " " + tm.Kind {
		case "batch/v1 Job":
			decode[batchv1.Job](t, f)
		case "v1 Service":
			decode[corev1.Service](t, f)
		case "v1 PersistentVolumeClaim":
			pvc := decode[corev1.PersistentVolumeClaim](t, f)
			if !slices.Contains(pvc.Spec.AccessModes, corev1.ReadWriteMany) {
				t.Errorf("%s: pods on several nodes share the volume: want ReadWriteMany, got %v", f, pvc.Spec.AccessModes)
			}
			if _, ok := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; !ok {
				t.Errorf("%s: no storage request", f)
			}
		default:
			t.Errorf("%s: unexpected object %s %s", f, tm.APIVersion, tm.Kind)
		}
	}
}

// pod is what the tests read of a Job's pod: its one container, its
// arguments as flags and positionals, its mounts.
type pod struct {
	spec corev1.PodSpec
	c    corev1.Container
	pos  []string
	flag map[string]string
}

func podOf(t *testing.T, file string, j *batchv1.Job, command string) *pod {
	t.Helper()
	p := &pod{spec: j.Spec.Template.Spec, flag: map[string]string{}}
	if len(p.spec.Containers) != 1 {
		t.Fatalf("%s: %d containers, want 1", file, len(p.spec.Containers))
	}
	p.c = p.spec.Containers[0]
	if !slices.Equal(p.c.Command, []string{command}) {
		t.Errorf("%s: command %q, want %s", file, p.c.Command, command)
	}
	for _, a := range p.c.Args {
		if name, val, ok := strings.Cut(a, "="); ok && strings.HasPrefix(name, "--") {
			p.flag[name] = val
		} else if strings.HasPrefix(a, "-") {
			t.Errorf("%s: argument %q: write flags as --name=value", file, a)
		} else {
			p.pos = append(p.pos, a)
		}
	}
	if p.spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("%s: restartPolicy %q: the Job retries a failed pod itself (Never)", file, p.spec.RestartPolicy)
	}
	vols := map[string]*corev1.PersistentVolumeClaimVolumeSource{}
	for _, v := range p.spec.Volumes {
		if v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != claim(t) {
			t.Errorf("%s: volume %q is not the claim %q of volume.yaml", file, v.Name, claim(t))
		}
		vols[v.Name] = v.PersistentVolumeClaim
	}
	for _, m := range p.c.VolumeMounts {
		if _, ok := vols[m.Name]; !ok {
			t.Errorf("%s: mount %s names no volume of the pod (%q)", file, m.MountPath, m.Name)
		}
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := p.c.Resources.Requests[r]; !ok {
			t.Errorf("%s: no %s request", file, r)
		}
	}
	return p
}

func claim(t *testing.T) string {
	return decode[corev1.PersistentVolumeClaim](t, "volume.yaml").Name
}

// mount is the mount under which the file p lies, or nil.
func (p *pod) mount(file string) *corev1.VolumeMount {
	var best *corev1.VolumeMount
	for i, m := range p.c.VolumeMounts {
		if strings.HasPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/") && (best == nil || len(m.MountPath) > len(best.MountPath)) {
			best = &p.c.VolumeMounts[i]
		}
	}
	return best
}

// onVolume checks that file lies on the volume, read-only or writable.
func (p *pod) onVolume(t *testing.T, manifest, what, file string, writable bool) {
	t.Helper()
	switch m := p.mount(file); {
	case m == nil:
		t.Errorf("%s: %s %s is on no mounted volume", manifest, what, file)
	case m.ReadOnly == writable:
		t.Errorf("%s: %s %s is on the mount %s with readOnly %v", manifest, what, file, m.MountPath, m.ReadOnly)
	}
}

// accepts runs hyperat-eval's command line with args: it must get past the
// parsing of its flags (there is no model here, so it then fails).
func accepts(t *testing.T, manifest string, args []string) {
	t.Helper()
	acceptedBy(t, manifest, app.EvalCommand(), app.Eval, args)
}

func acceptedBy(t *testing.T, manifest string, c *cli.Command, run func(*cli.Command, []string) error, args []string) {
	t.Helper()
	c.Stdout, c.Stderr = io.Discard, io.Discard
	err := run(c, args)
	if ue := (*cli.UsageError)(nil); errors.As(err, &ue) {
		t.Errorf("%s: %s refuses %q: %v", manifest, c.Name, args, err)
	}
	t.Logf("%s: %v", manifest, err)
}

// evalJob reads eval-job.yaml and checks it: an Indexed Job of N
// completions whose pod I evaluates shard I/N onto the volume.
func evalJob(t *testing.T) (n int, p *pod) {
	const f = "eval-job.yaml"
	j := decode[batchv1.Job](t, f)
	s := j.Spec
	if s.CompletionMode == nil || *s.CompletionMode != batchv1.IndexedCompletion {
		t.Fatalf("%s: completionMode %v, want Indexed", f, s.CompletionMode)
	}
	if s.Completions == nil || *s.Completions < 1 {
		t.Fatalf("%s: completions %v, want the number of shards", f, s.Completions)
	}
	n = int(*s.Completions)
	if s.Parallelism == nil || *s.Parallelism < 1 || *s.Parallelism > int32(n) {
		t.Errorf("%s: parallelism %v, want 1 to completions (%d)", f, s.Parallelism, n)
	}
	if s.BackoffLimitPerIndex == nil || *s.BackoffLimitPerIndex < 1 {
		t.Errorf("%s: backoffLimitPerIndex %v: a shard stopped by a preemption should be retried", f, s.BackoffLimitPerIndex)
	}
	p = podOf(t, f, j, "hyperat-eval")
	if pfp := s.PodFailurePolicy; pfp != nil {
		for _, r := range pfp.Rules {
			if r.Action == batchv1.PodFailurePolicyActionFailIndex && s.BackoffLimitPerIndex == nil {
				t.Errorf("%s: FailIndex needs backoffLimitPerIndex", f)
			}
			if e := r.OnExitCodes; e != nil && ((e.ContainerName != nil && *e.ContainerName != p.c.Name) || slices.Contains(e.Values, 0)) {
				t.Errorf("%s: a podFailurePolicy rule on exit codes %v of container %v", f, e.Values, e.ContainerName)
			}
		}
	}
	if got, want := p.flag["--shard"], fmt.Sprintf("%s/%d", indexVar, n); got != want {
		t.Errorf("%s: --shard=%s, want --shard=%s (N = completions)", f, got, want)
	}
	if !strings.Contains(p.flag["--json"], indexVar) {
		t.Errorf("%s: --json=%s: each shard needs its own report, named by %s", f, p.flag["--json"], indexVar)
	}
	if len(p.pos) != 1 {
		t.Fatalf("%s: positional arguments %q, want the model", f, p.pos)
	}
	p.onVolume(t, f, "the model", p.pos[0], false)
	p.onVolume(t, f, "--data", p.flag["--data"], false)
	p.onVolume(t, f, "--json", p.flag["--json"], true)
	for _, i := range []int{0, n - 1} {
		args := slices.Clone(p.c.Args)
		for k := range args {
			args[k] = strings.ReplaceAll(args[k], indexVar, fmt.Sprint(i))
		}
		accepts(t, f, args)
	}
	return n, p
}

func TestEvalJob(t *testing.T) { evalJob(t) }

// The merge Job reads the N reports the eval Job writes, from the same place
// on the volume, and writes the merged report beside them.
func TestEvalMergeJob(t *testing.T) {
	const f = "eval-merge-job.yaml"
	n, ev := evalJob(t)
	j := decode[batchv1.Job](t, f)
	if j.Spec.CompletionMode != nil && *j.Spec.CompletionMode == batchv1.IndexedCompletion {
		t.Errorf("%s: the merge is one pod, not an Indexed Job", f)
	}
	p := podOf(t, f, j, "hyperat-eval")
	if len(p.pos) == 0 || p.pos[0] != "merge" {
		t.Fatalf("%s: arguments %q, want merge REPORT...", f, p.c.Args)
	}
	var want []string
	for i := range n {
		want = append(want, strings.ReplaceAll(ev.flag["--json"], indexVar, fmt.Sprint(i)))
	}
	if got := p.pos[1:]; !slices.Equal(got, want) {
		t.Errorf("%s: merges %q, want the eval Job's %d reports %q", f, got, n, want)
	}
	out := p.flag["--json"]
	if out == "" || slices.Contains(want, out) {
		t.Errorf("%s: --json=%q, want a file other than the shards' reports", f, out)
	}
	p.onVolume(t, f, "--json", out, true)
	for _, r := range want {
		p.onVolume(t, f, "the report", r, true)
		em, mm := ev.mount(r), p.mount(r)
		if em == nil || mm == nil || em.SubPath != mm.SubPath || path.Clean(em.MountPath) != path.Clean(mm.MountPath) {
			t.Errorf("%s: %s is not where the eval Job writes it (mounts %+v and %+v)", f, r, em, mm)
		}
	}
	accepts(t, f, p.c.Args)
}

// The tuning Job runs N workers that find worker 0 through the headless
// Service, take their number from the Job, restart as a group and resume.
func TestTuneJob(t *testing.T) {
	const f, fs = "tune-job.yaml", "tune-service.yaml"
	j := decode[batchv1.Job](t, f)
	svc := decode[corev1.Service](t, fs)
	s := j.Spec
	if s.CompletionMode == nil || *s.CompletionMode != batchv1.IndexedCompletion {
		t.Fatalf("%s: completionMode %v, want Indexed (the pod's index is its worker number)", f, s.CompletionMode)
	}
	if s.Completions == nil || *s.Completions < 1 || s.Parallelism == nil || *s.Parallelism != *s.Completions {
		t.Fatalf("%s: completions %v, parallelism %v: the N workers run at once, both N", f, s.Completions, s.Parallelism)
	}
	n := int(*s.Completions)
	// a failed worker makes every other fail: each index retries, and the
	// Job ends once one cannot
	if s.BackoffLimitPerIndex == nil || *s.BackoffLimitPerIndex < 1 {
		t.Errorf("%s: backoffLimitPerIndex %v: a group that lost a worker should restart", f, s.BackoffLimitPerIndex)
	}
	if s.MaxFailedIndexes == nil || *s.MaxFailedIndexes != 0 {
		t.Errorf("%s: maxFailedIndexes %v, want 0: the others cannot go on without a failed worker", f, s.MaxFailedIndexes)
	}
	p := podOf(t, f, j, "hyperat-tune")
	usage := false
	if pfp := s.PodFailurePolicy; pfp != nil {
		for _, r := range pfp.Rules {
			if e := r.OnExitCodes; e != nil {
				if (e.ContainerName != nil && *e.ContainerName != p.c.Name) || slices.Contains(e.Values, 0) || slices.Contains(e.Values, 1) {
					t.Errorf("%s: a podFailurePolicy rule on exit codes %v of container %v (1, a lost worker, must restart the group)", f, e.Values, e.ContainerName)
				}
				usage = usage || (slices.Contains(e.Values, 2) && r.Action == batchv1.PodFailurePolicyActionFailJob)
			}
		}
	}
	if !usage {
		t.Errorf("%s: status 2, a mistake in the command line, should fail the Job, not be retried", f)
	}

	// the Service: headless, selecting the Job's pods, named as their subdomain
	if svc.Spec.ClusterIP != corev1.ClusterIPNone {
		t.Errorf("%s: clusterIP %q, want None (headless: a DNS name per pod)", fs, svc.Spec.ClusterIP)
	}
	if len(svc.Spec.Selector) == 0 {
		t.Errorf("%s: no selector", fs)
	}
	for k, v := range svc.Spec.Selector {
		if j.Spec.Template.Labels[k] != v {
			t.Errorf("%s: selector %s=%s does not match the pods of %s (labels %v)", fs, k, v, f, j.Spec.Template.Labels)
		}
	}
	if p.spec.Subdomain != svc.Name {
		t.Errorf("%s: subdomain %q, want the Service %q", f, p.spec.Subdomain, svc.Name)
	}

	// the command line: N workers, worker 0 at <job>-0.<service>:port
	if got := p.flag["--workers"]; got != fmt.Sprint(n) {
		t.Errorf("%s: --workers=%s, want %d (completions)", f, got, n)
	}
	if w, ok := p.flag["--worker"]; ok && w != indexVar {
		t.Errorf("%s: --worker=%s, want the index %s (or the default)", f, w, indexVar)
	}
	host, port, ok := strings.Cut(p.flag["--coordinator"], ":")
	if want := j.Name + "-0." + svc.Name; !ok || host != want {
		t.Errorf("%s: --coordinator=%s, want %s:PORT (pod 0 through the Service)", f, p.flag["--coordinator"], want)
	}
	served := false
	for _, sp := range svc.Spec.Ports {
		if fmt.Sprint(sp.Port) != port {
			continue
		}
		for _, cp := range p.c.Ports {
			served = served || (fmt.Sprint(cp.ContainerPort) == port && (sp.TargetPort.String() == cp.Name || sp.TargetPort.IntValue() == int(cp.ContainerPort)))
		}
	}
	if !served {
		t.Errorf("%s: the coordinator's port %s is not a port of the Service leading to the container's", f, port)
	}
	// a restarted pod runs the same command line: it must resume
	if p.flag["--resume-or-start"] != "true" {
		t.Errorf("%s: without --resume-or-start a restarted worker 0 refuses the run it left", f)
	}
	for _, bad := range []string{"--resume", "--force"} {
		if _, ok := p.flag[bad]; ok {
			t.Errorf("%s: %s: a restart would refuse to start, or start over", f, bad)
		}
	}
	if p.flag["--micro-batch"] == "" {
		t.Errorf("%s: no --micro-batch: the result would depend on the memory of worker 0's pod", f)
	}
	p.onVolume(t, f, "--workspace", p.flag["--workspace"]+"/workspace.json", true)
	p.onVolume(t, f, "--data", p.flag["--data"], false)
	for _, i := range []int{0, n - 1} {
		t.Setenv("JOB_COMPLETION_INDEX", fmt.Sprint(i))
		acceptedBy(t, f, app.TuneCommand(), app.Tune, p.c.Args)
	}
}
