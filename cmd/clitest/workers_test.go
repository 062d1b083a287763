package clitest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hyperat/hyperat/internal/testutil"
)

// workersArgs is a tiny data-parallel run on the MNIST subset: batches of 8
// in 4 micro-batches of 2, split validation every 2 iterations, a
// checkpoint every iteration.
func workersArgs(ws string, iters int) []string {
	return []string{"--workspace", ws, "--data", testutil.Fixture("mnist"), "--eps", "0.1", "--iters", fmt.Sprint(iters),
		"--batch", "8", "--micro-batch", "2", "--steps", "1", "--rank", "2", "--val", "16", "--val-steps", "1",
		"--eval-every", "2", "--checkpoint-every", "1", "--seed", "3", "--lr", "1e-4", "--peer-timeout", "20s"}
}

func importMNIST(t *testing.T, dir, ws string) {
	t.Helper()
	succeeds(t, hyperat(t, dir, "hyperat-import", testutil.Fixture("models", "mnist_vit_op17.onnx"), "--workspace", ws))
}

// freePort is a port of the loopback interface that nothing listens on.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// worker is one hyperat-tune process of a group.
type worker struct {
	cmd      *exec.Cmd
	out, err bytes.Buffer
	done     chan struct{}
	code     int
	exited   time.Time
}

// startWorkers starts n hyperat-tune processes in dir as worker 0..n-1 of
// a group, worker i on the workspace wss[i], each killed when ctx ends.
func startWorkers(t *testing.T, ctx context.Context, dir string, wss []string, args func(ws string) []string) []*worker {
	t.Helper()
	addr := freePort(t)
	n := len(wss)
	ws := make([]*worker, n)
	for i := range n {
		w := &worker{done: make(chan struct{})}
		a := append(args(wss[i]), "--workers", fmt.Sprint(n), "--coordinator", addr)
		w.cmd = exec.CommandContext(ctx, filepath.Join(bin, "hyperat-tune"), a...)
		w.cmd.Dir = dir
		// the Job's way of numbering its pods
		w.cmd.Env = append(os.Environ(), fmt.Sprintf("JOB_COMPLETION_INDEX=%d", i))
		w.cmd.Stdout, w.cmd.Stderr = &w.out, &w.err
		if err := w.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() {
			w.cmd.Wait()
			w.code, w.exited = w.cmd.ProcessState.ExitCode(), time.Now()
			close(w.done)
		}()
		ws[i] = w
	}
	return ws
}

func waitAll(ws []*worker) {
	for _, w := range ws {
		<-w.done
	}
}

func (w *worker) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", w.code, w.out.String(), w.err.String())
}

// tunedFiles are the files of a finished run that hold its numbers: the
// result's weights and the last checkpoint's tensors.
func tunedFiles(t *testing.T, ws string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	ck, _ := filepath.Glob(filepath.Join(ws, "checkpoint-*.safetensors"))
	for _, p := range append(ck, filepath.Join(ws, "tuned", "weights.safetensors")) {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = b
	}
	return out
}

func sameTuned(t *testing.T, what string, want, got map[string][]byte) {
	t.Helper()
	if len(want) != len(got) {
		t.Fatalf("%s: %d result files, want %d", what, len(got), len(want))
	}
	for name, b := range want {
		if !bytes.Equal(b, got[name]) {
			t.Fatalf("%s: %s differs from the single process's", what, name)
		}
	}
}

// valRecords are the validations of a run's metrics, as JSON without the
// step timings.
func valRecords(t *testing.T, ws string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(ws, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		var r map[string]any
		if json.Unmarshal([]byte(l), &r) == nil && r["kind"] == "val" {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// 1, 2 and 4 worker processes on the loopback interface tune the same
// parameters, bit for bit, as one process (with the same micro-batches),
// validate the same, and only worker 0 writes: the others here have
// workspaces of their own, which they leave as they were.
func TestWorkersEqualOneProcess(t *testing.T) {
	dir := t.TempDir()
	importMNIST(t, dir, "one")
	succeeds(t, hyperat(t, dir, "hyperat-tune", workersArgs("one", 4)...))
	want, wantVal := tunedFiles(t, filepath.Join(dir, "one")), valRecords(t, filepath.Join(dir, "one"))
	if wantVal == "" {
		t.Fatal("the reference run did not validate during the run")
	}
	for _, n := range []int{1, 2, 4} {
		wss := []string{fmt.Sprint("w", n)}
		importMNIST(t, dir, wss[0])
		for i := 1; i < n; i++ {
			wss = append(wss, fmt.Sprintf("w%d-%d", n, i))
			importMNIST(t, dir, wss[i])
		}
		var before []map[string]string
		for _, ws := range wss[1:] {
			before = append(before, snapshot(t, filepath.Join(dir, ws)))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		group := startWorkers(t, ctx, dir, wss, func(ws string) []string { return workersArgs(ws, 4) })
		waitAll(group)
		cancel()
		for i, w := range group {
			if w.code != 0 || w.err.Len() > 0 {
				t.Fatalf("%d workers: worker %d failed:\n%s", n, i, w)
			}
		}
		sameTuned(t, fmt.Sprint(n, " workers"), want, tunedFiles(t, filepath.Join(dir, wss[0])))
		if got := valRecords(t, filepath.Join(dir, wss[0])); got != wantVal {
			t.Errorf("%d workers validated\n%s\nwant\n%s", n, got, wantVal)
		}
		for i, ws := range wss[1:] {
			sameFiles(t, before[i], snapshot(t, filepath.Join(dir, ws)))
		}
	}
}

// A worker killed mid-run makes every other worker exit non-zero at once
// with one line that says so; restarted with --resume-or-start, as a Job
// restarts its pods, the workers resume from worker 0's last checkpoint and
// end with the parameters of a run never interrupted. Killed: a worker
// other than 0, then worker 0, the coordinator.
func TestWorkerKilledAndRestarted(t *testing.T) {
	dir := t.TempDir()
	const iters = 8
	args := func(ws string) []string { return append(workersArgs(ws, iters), "--resume-or-start") }
	importMNIST(t, dir, "ref")
	succeeds(t, hyperat(t, dir, "hyperat-tune", args("ref")...))
	want := tunedFiles(t, filepath.Join(dir, "ref"))
	for _, killed := range []int{1, 0} {
		ws := fmt.Sprint("killed", killed)
		importMNIST(t, dir, ws)
		wss := []string{ws, ws, ws} // one shared workspace, as on a volume
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		group := startWorkers(t, ctx, dir, wss, args)
		// kill once worker 0 has checkpointed an iteration past the first
		deadline := time.Now().Add(time.Minute)
		for !checkpointed(filepath.Join(dir, ws), 2) {
			if time.Now().After(deadline) {
				t.Fatalf("no checkpoint of iteration 2 within a minute:\n%s", group[0])
			}
			time.Sleep(20 * time.Millisecond)
		}
		group[killed].cmd.Process.Signal(syscall.SIGKILL)
		killedAt := time.Now()
		waitAll(group)
		cancel()
		for i, w := range group {
			if i == killed {
				continue
			}
			if w.code == 0 {
				if checkpointed(filepath.Join(dir, ws), iters) {
					t.Skipf("the run ended before the kill reached it")
				}
				t.Fatalf("worker %d went on after worker %d was killed:\n%s", i, killed, w)
			}
			if took := w.exited.Sub(killedAt); took > 10*time.Second {
				t.Errorf("worker %d exited %v after worker %d was killed, want at once", i, took, killed)
			}
			fails(t, result{code: w.code, stdout: w.out.String(), stderr: w.err.String()}, 1, "gone", "--resume-or-start")
		}
		// the Job restarts every worker with the same command line
		ctx, cancel = context.WithTimeout(context.Background(), 2*time.Minute)
		group = startWorkers(t, ctx, dir, wss, args)
		waitAll(group)
		cancel()
		for i, w := range group {
			if w.code != 0 || w.err.Len() > 0 {
				t.Fatalf("restarted worker %d failed:\n%s", i, w)
			}
		}
		if !strings.Contains(group[1].out.String(), "resume    from iteration") {
			t.Errorf("worker 1 did not resume from worker 0's checkpoint:\n%s", group[1])
		}
		sameTuned(t, fmt.Sprint("killed worker ", killed), want, tunedFiles(t, filepath.Join(dir, ws)))
	}
}

// checkpointed reports whether the workspace's checkpoint is at iteration
// it or later.
func checkpointed(ws string, it int) bool {
	b, err := os.ReadFile(filepath.Join(ws, "state.json"))
	if err != nil {
		return false
	}
	var st struct{ Iteration int }
	return json.Unmarshal(b, &st) == nil && st.Iteration >= it
}

// Misused data-parallel flags get one line each, before any work.
func TestWorkersMisuse(t *testing.T) {
	dir := t.TempDir()
	importMNIST(t, dir, "ws")
	base := workersArgs("ws", 2)
	for _, c := range []struct {
		args []string
		env  string
		code int
		want []string
	}{
		{[]string{"--workers", "2", "--coordinator", "127.0.0.1:1"}, "", 2, []string{"--worker I", "JOB_COMPLETION_INDEX"}},
		{[]string{"--workers", "2", "--worker", "0"}, "", 2, []string{"--coordinator"}},
		{[]string{"--workers", "2", "--worker", "2", "--coordinator", "127.0.0.1:1"}, "", 2, []string{"0 to 1"}},
		{[]string{"--workers", "2", "--coordinator", "127.0.0.1:1"}, "JOB_COMPLETION_INDEX=x", 2, []string{"$JOB_COMPLETION_INDEX", `"x"`}},
		{[]string{"--workers", "0"}, "", 2, []string{"--workers 0"}},
		{[]string{"--peer-timeout", "0s"}, "", 2, []string{"--peer-timeout"}},
		{[]string{"--resume-or-start", "--force"}, "", 2, []string{"--resume-or-start"}},
		{[]string{"--micro-batch", "9"}, "", 2, []string{"--micro-batch 9", "--batch 8"}},
		{[]string{"--workers", "5", "--worker", "0", "--coordinator", "127.0.0.1:1"}, "", 1, []string{"--workers 5", "4 micro-batches"}},
	} {
		cmd := exec.Command(filepath.Join(bin, "hyperat-tune"), append(append([]string{}, base...), c.args...)...)
		cmd.Dir = dir
		cmd.Env = os.Environ()
		if c.env != "" {
			cmd.Env = append(cmd.Env, c.env)
		}
		fails(t, runCmd(t, "hyperat-tune", cmd), c.code, c.want...)
	}
	// a run of other settings is not resumed by --resume-or-start
	succeeds(t, hyperat(t, dir, "hyperat-tune", base...))
	fails(t, hyperat(t, dir, "hyperat-tune", append(workersArgs("ws", 3), "--resume-or-start")...), 1, "other settings", "Iters")
	// and a complete run of these settings is left as it is
	before := snapshot(t, filepath.Join(dir, "ws"))
	succeeds(t, hyperat(t, dir, "hyperat-tune", append(base, "--resume-or-start")...))
	sameFiles(t, before, snapshot(t, filepath.Join(dir, "ws")))

	// a worker with other settings is refused when it joins, and both stop
	importMNIST(t, dir, "mis")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	seed := 0
	group := startWorkers(t, ctx, dir, []string{"mis", "mis"}, func(ws string) []string {
		seed++
		return append(workersArgs(ws, 2), "--seed", fmt.Sprint(seed), "--peer-timeout", "3s")
	})
	waitAll(group)
	fails(t, result{code: group[1].code, stdout: group[1].out.String(), stderr: group[1].err.String()}, 1, "other settings than rank 0")
	fails(t, result{code: group[0].code, stdout: group[0].out.String(), stderr: group[0].err.String()}, 1, "did not join")
}
