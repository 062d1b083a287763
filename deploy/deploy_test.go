// Package deploy holds the Kubernetes manifests that run hyperat on a
// cluster (docs/CLUSTER.md); its test checks them against the Kubernetes API
// types, which only the test imports.
package deploy

// The manifests decode strictly (a misspelt field fails) into the API types,
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

func podOf(t *testing.T, file string, j *batchv1.Job) *pod {
	t.Helper()
	p := &pod{spec: j.Spec.Template.Spec, flag: map[string]string{}}
	if len(p.spec.Containers) != 1 {
		t.Fatalf("%s: %d containers, want 1", file, len(p.spec.Containers))
	}
	p.c = p.spec.Containers[0]
	if !slices.Equal(p.c.Command, []string{"hyperat-eval"}) {
		t.Errorf("%s: command %q, want hyperat-eval", file, p.c.Command)
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
	c := app.EvalCommand()
	c.Stdout, c.Stderr = io.Discard, io.Discard
	err := app.Eval(c, args)
	if ue := (*cli.UsageError)(nil); errors.As(err, &ue) {
		t.Errorf("%s: hyperat-eval refuses %q: %v", manifest, args, err)
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
	p = podOf(t, f, j)
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
	p := podOf(t, f, j)
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
