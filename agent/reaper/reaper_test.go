package reaper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// run starts cmd through the wait loop and waits for its exit.
func run(cmd *exec.Cmd) (Exit, error) {
	c, err := Start(cmd)
	if err != nil {
		return Exit{}, err
	}
	return c.Exit(), nil
}

func TestExitCodesAndSignals(t *testing.T) {
	exit, err := run(exec.Command("sh", "-c", "exit 3"))
	if err != nil {
		t.Fatal(err)
	}
	if exit.Code != 3 || exit.Signal != 0 || exit.Success() {
		t.Fatalf("exit = %+v, want code 3", exit)
	}
	exit, err = run(exec.Command("sh", "-c", "kill -9 $$"))
	if err != nil {
		t.Fatal(err)
	}
	if exit.Signal != syscall.SIGKILL || exit.Code != -1 {
		t.Fatalf("exit = %+v, want SIGKILL", exit)
	}
	if got := exit.String(); got != "killed by signal 9 (killed)" {
		t.Fatalf("String() = %q", got)
	}
}

func TestConcurrentStartsGetTheirOwnExits(t *testing.T) {
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			exit, err := run(exec.Command("sh", "-c", fmt.Sprintf("exit %d", i)))
			if err != nil {
				errs <- err
				return
			}
			if exit.Code != i {
				errs <- fmt.Errorf("child %d got exit code %d", i, exit.Code)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestStartRefusesWhatNeedsWait(t *testing.T) {
	cmd := exec.Command("true")
	cmd.Stdout = &bytes.Buffer{}
	if _, err := Start(cmd); err == nil || !strings.Contains(err.Error(), "*os.File") {
		t.Fatalf("Start with a buffer: err = %v", err)
	}
	if _, err := Start(exec.Command("/nonexistent/binary")); err == nil {
		t.Fatal("Start of a missing binary succeeded")
	}
}

// orphanScenario starts a shell that leaves a grandchild behind and exits,
// then waits until the wait loop has reaped that grandchild.
func orphanScenario() error {
	before := Orphans()
	exit, err := run(exec.Command("sh", "-c", "sleep 0.2 & exit 0"))
	if err != nil {
		return err
	}
	if !exit.Success() {
		return fmt.Errorf("shell: %s", exit)
	}
	deadline := time.Now().Add(5 * time.Second)
	for Orphans() == before {
		if time.Now().After(deadline) {
			return fmt.Errorf("orphaned sleep was not reaped (orphans=%d)", Orphans())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if z := zombies(); len(z) > 0 {
		return fmt.Errorf("zombies left: %v", z)
	}
	return nil
}

// zombies lists this process's children that are zombies.
func zombies() []string {
	var out []string
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	me := fmt.Sprint(os.Getpid())
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[0] == "Z" && f[1] == me {
			out = append(out, p)
		}
	}
	return out
}

func TestSubreaperReapsOrphans(t *testing.T) {
	if err := BecomeSubreaper(); err != nil {
		t.Fatal(err)
	}
	if err := orphanScenario(); err != nil {
		t.Fatal(err)
	}
}

// TestReapsAsPID1 runs the orphan scenario in a fresh PID namespace where the
// test binary is PID 1.
func TestReapsAsPID1(t *testing.T) {
	if os.Getenv("REAPER_AS_PID1") == "1" {
		if os.Getpid() != 1 {
			fmt.Println("not pid 1")
			os.Exit(2)
		}
		if err := orphanScenario(); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("pid1 ok")
		os.Exit(0)
	}
	if os.Geteuid() != 0 {
		t.Skip("unshare --pid needs root")
	}
	out, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("unshare", "--pid", "--fork", "--mount-proc", os.Args[0], "-test.run=^TestReapsAsPID1$")
	cmd.Env = append(os.Environ(), "REAPER_AS_PID1=1")
	cmd.Stdout, cmd.Stderr = out, out
	exit, err := run(cmd)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(out.Name())
	if !exit.Success() || !strings.Contains(string(b), "pid1 ok") {
		t.Fatalf("as PID 1: %s\n%s", exit, b)
	}
}

func TestOutputAndRunTo(t *testing.T) {
	out, err := Output(context.Background(), exec.Command("sh", "-c", "echo hello; echo warn >&2"))
	if err != nil || string(out) != "hello\n" {
		t.Fatalf("Output = %q, %v", out, err)
	}
	_, err = Output(context.Background(), exec.Command("sh", "-c", "echo first >&2; echo 'fatal: bad' >&2; exit 128"))
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Exit.Code != 128 || ee.Error() != "exit code 128: first | fatal: bad" {
		t.Fatalf("failing Output: %v", err)
	}
	// A grandchild left in the background must not keep RunTo waiting.
	start := time.Now()
	var buf bytes.Buffer
	if err := RunTo(context.Background(), exec.Command("sh", "-c", "sleep 30 & echo done"), &buf, nil); err != nil || buf.String() != "done\n" {
		t.Fatalf("RunTo = %q, %v", buf.String(), err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("RunTo waited for a background grandchild")
	}
	// Cancel kills the whole group.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start = time.Now()
	err = RunTo(ctx, exec.Command("sh", "-c", "sleep 30; echo never"), &buf, nil)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("canceled RunTo: %v after %s", err, time.Since(start))
	}
}

func TestRunToDoesNotWaitForAnEscapedDescendant(t *testing.T) {
	start := time.Now()
	var buf bytes.Buffer
	err := RunTo(context.Background(), exec.Command("sh", "-c", "setsid sleep 30 & sleep 0.3; echo started"), &buf, nil)
	if err != nil || buf.String() != "started\n" {
		t.Fatalf("RunTo = %q, %v", buf.String(), err)
	}
	if d := time.Since(start); d > pipeGrace+2*time.Second {
		t.Fatalf("RunTo waited %s for a descendant that left the group", d)
	}
}

func TestReapedAnnouncesChildrenAndOrphans(t *testing.T) {
	if err := BecomeSubreaper(); err != nil {
		t.Fatal(err)
	}
	// A child the test started: the channel taken before its exit closes.
	cmd := exec.Command("sleep", "30")
	c, err := Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	reaped := Reaped()
	if err := syscall.Kill(c.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reaped:
	case <-time.After(5 * time.Second):
		t.Fatal("Reaped() did not close after a child was reaped")
	}
	select {
	case <-c.Done():
	default:
		t.Fatal("Reaped() closed before the child's exit was delivered")
	}
	if next := Reaped(); next == reaped {
		t.Fatal("Reaped() returned the closed channel again")
	}

	// An orphan: the shell exits at once, its background sleep is
	// re-parented to the test and reaped later.
	pidFile := filepath.Join(t.TempDir(), "pid")
	exit, err := run(exec.Command("sh", "-c", `sleep 30 & echo $! > "$0"`, pidFile))
	if err != nil || !exit.Success() {
		t.Fatalf("shell: %v, %v", exit, err)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	var orphan int
	if _, err := fmt.Sscan(string(b), &orphan); err != nil {
		t.Fatalf("pid file %q: %v", b, err)
	}
	if err := syscall.Kill(orphan, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// A round may reap other children first (a test run before this one
	// left them): wait round by round until the orphan is gone.
	deadline := time.After(5 * time.Second)
	for {
		reaped = Reaped() // before the check: a reap after it wakes the wait
		if err := syscall.Kill(orphan, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		select {
		case <-reaped:
		case <-deadline:
			t.Fatalf("Reaped() did not close after the orphan %d was reaped, or it is still there", orphan)
		}
	}
}
