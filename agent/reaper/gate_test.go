package reaper

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// gateChecker is a Tracker that checks, when told of a group, that the
// command is still at its gate: the process is the gate's shell and the
// program has not run.
type gateChecker struct {
	t      *testing.T
	marker string
	pgids  []int
}

func (g *gateChecker) Started(pgid int) func() {
	g.pgids = append(g.pgids, pgid)
	// Just after the start the kernel may still be setting the new
	// program's arguments up: the command line reads empty until then.
	var cmdline []byte
	var err error
	for deadline := time.Now().Add(5 * time.Second); len(cmdline) == 0 && err == nil && time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		cmdline, err = os.ReadFile(filepath.Join("/proc", strconv.Itoa(pgid), "cmdline"))
	}
	if err != nil || !strings.Contains(string(cmdline), "slotagent-gate") {
		g.t.Errorf("told of group %d, which runs %q (%v), not the gate", pgid, cmdline, err)
	}
	if _, err := os.Stat(g.marker); err == nil {
		g.t.Error("the command ran before the tracker was told of its group")
	}
	return func() {}
}

func TestRunToRunsATrackedCommandOnlyOnceItsGroupIsKnown(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	tr := &gateChecker{t: t, marker: marker}
	var out bytes.Buffer
	// The arguments reach the program as they are: no shell reads them.
	cmd := exec.Command("sh", "-c", `echo ran > "$1"; printf '%s|' "$0" "$2"`, "arg $0 'x'", marker, "two words")
	if err := RunTo(WithTracker(context.Background(), tr), cmd, &out, nil); err != nil {
		t.Fatal(err)
	}
	if len(tr.pgids) != 1 {
		t.Fatalf("tracker told of %d groups", len(tr.pgids))
	}
	if got := out.String(); got != "arg $0 'x'|two words|" {
		t.Fatalf("output %q", got)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("the command never ran: %v", err)
	}
}

func TestAClosedGateNeverRunsTheProgram(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "ran")
	child, gate, err := StartGated(exec.Command("touch", marker))
	if err != nil {
		t.Fatal(err)
	}
	gate.w.Close() // as when the agent dies
	if exit := child.Exit(); exit.Code != GateClosed {
		t.Fatalf("exit %s, want code %d", exit, GateClosed)
	}
	if _, err := os.Stat(marker); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the program ran: %v", err)
	}
}

func TestStartGatedRefusesWhatCannotRun(t *testing.T) {
	for _, cmd := range []*exec.Cmd{
		exec.Command("no-such-program-slotagent"),
		exec.Command("/no/such/program"),
		func() *exec.Cmd { c := exec.Command("true"); c.ExtraFiles = []*os.File{os.Stdin}; return c }(),
	} {
		if child, _, err := StartGated(cmd); err == nil {
			child.Exit()
			t.Errorf("%v started", cmd.Args)
		}
	}
}

func TestRunToNamesTheProgramWhenCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := RunTo(WithTracker(ctx, &gateChecker{t: t}), exec.Command("sleep", "30"), nil, nil)
	if err == nil || !strings.Contains(err.Error(), "sleep") || strings.Contains(err.Error(), "/bin/sh") {
		t.Fatalf("err = %v", err)
	}
}
