package reaper

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ExitError is returned by RunTo and Output when the command ran but did
// not exit with code 0.
type ExitError struct {
	Exit Exit
	// Stderr holds the end of what the command wrote to stderr (Output only).
	Stderr string
}

func (e *ExitError) Error() string {
	if e.Stderr != "" {
		return e.Exit.String() + ": " + e.Stderr
	}
	return e.Exit.String()
}

// Tracker is told of the process group of every command that RunTo runs
// under a context carrying it (WithTracker): Started when the command has
// started (its PID is the group's ID), and the function Started returned
// once RunTo is done with it (the group killed). The command is held at a
// gate (see StartGated) until Started returns, so a tracker that records
// the group durably before it returns leaves no moment in which an agent
// killed leaves a command running unrecorded.
type Tracker interface {
	Started(pgid int) (ended func())
}

type trackerKey struct{}

// WithTracker returns ctx carrying t, for RunTo and Output.
func WithTracker(ctx context.Context, t Tracker) context.Context {
	return context.WithValue(ctx, trackerKey{}, t)
}

// RunTo runs cmd in its own process group with its stdout and stderr copied
// to the writers (nil discards), and waits for it and for the copying to
// finish. When ctx ends first, the whole group is killed and ctx's error is
// returned. A non-zero exit is an *ExitError. A Tracker in ctx is told of
// the group.
func RunTo(ctx context.Context, cmd *exec.Cmd, stdout, stderr io.Writer) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	name := cmd.Path // a gate rewrites it
	var copies sync.WaitGroup
	var closers, readers []*os.File
	attach := func(w io.Writer) (*os.File, error) {
		if w == nil {
			w = io.Discard
		}
		r, pw, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		closers, readers = append(closers, pw), append(readers, r)
		copies.Add(1)
		go func() {
			defer copies.Done()
			defer r.Close()
			_, _ = io.Copy(w, r)
		}()
		return pw, nil
	}
	var err error
	if cmd.Stdout, err = attach(stdout); err != nil {
		return fmt.Errorf("pipe: %w", err)
	}
	if cmd.Stderr, err = attach(stderr); err != nil {
		closers[0].Close()
		copies.Wait()
		return fmt.Errorf("pipe: %w", err)
	}
	t, tracked := ctx.Value(trackerKey{}).(Tracker)
	var child *Child
	var gate *Gate
	if tracked {
		child, gate, err = StartGated(cmd)
	} else {
		child, err = Start(cmd)
	}
	for _, f := range closers {
		f.Close()
	}
	if err != nil {
		copies.Wait()
		return err
	}
	if tracked {
		ended := t.Started(child.Pid)
		defer ended()
		gate.Open()
	}
	select {
	case <-child.Done():
	case <-ctx.Done():
		_ = syscall.Kill(-child.Pid, syscall.SIGKILL)
		<-child.Done()
		drain(&copies, readers)
		return fmt.Errorf("%s: %w", name, ctx.Err())
	}
	// Whatever the command left in its group must not hold the pipes open.
	_ = syscall.Kill(-child.Pid, syscall.SIGKILL)
	drain(&copies, readers)
	if exit := child.Exit(); !exit.Success() {
		return &ExitError{Exit: exit}
	}
	return nil
}

// pipeGrace is how long the output of an exited command may still arrive:
// a descendant that left the process group (setsid) may hold the pipes.
const pipeGrace = 2 * time.Second

// drain waits for the output to be copied, then closes the read ends of
// pipes that a stray descendant still holds open.
func drain(copies *sync.WaitGroup, readers []*os.File) {
	done := make(chan struct{})
	go func() { copies.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(pipeGrace):
		for _, r := range readers {
			_ = r.Close()
		}
		<-done
	}
}

// Output runs cmd like RunTo and returns its stdout; a non-zero exit is an
// *ExitError carrying the last lines of stderr.
func Output(ctx context.Context, cmd *exec.Cmd) ([]byte, error) {
	var out, errOut bytes.Buffer
	err := RunTo(ctx, cmd, &out, &errOut)
	var ee *ExitError
	if errors.As(err, &ee) {
		ee.Stderr = lastLines(errOut.String(), 5)
	}
	return out.Bytes(), err
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
