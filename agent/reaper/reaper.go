// Package reaper starts child processes and owns every child exit: one wait
// loop reaps all children of the agent, hands each exit to the code that
// started that child, and discards the exits of orphans that were re-parented
// to the agent (as PID 1 or as a child subreaper).
//
// Because the loop calls wait4(-1), nothing else in the agent may wait for a
// child: every child process must be started through this package, never with
// exec.Cmd.Run, Output or Wait.
package reaper

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Exit describes how a child ended.
type Exit struct {
	// Code is the exit code, or -1 when a signal ended the process.
	Code int
	// Signal is the signal that ended the process, or 0.
	Signal syscall.Signal
	// At is when the exit was reaped.
	At time.Time
}

// Success reports whether the child exited with code 0.
func (e Exit) Success() bool { return e.Code == 0 && e.Signal == 0 }

// String says how the child ended, e.g. "exit code 1" or "killed by signal 9 (killed)".
func (e Exit) String() string {
	if e.Signal != 0 {
		return fmt.Sprintf("killed by signal %d (%s)", int(e.Signal), e.Signal)
	}
	return fmt.Sprintf("exit code %d", e.Code)
}

// Child is a started child process whose exit the wait loop will deliver.
type Child struct {
	// Pid is the child's process ID.
	Pid  int
	proc *os.Process
	done chan struct{}
	exit Exit
}

// Done is closed when the child has exited and been reaped.
func (c *Child) Done() <-chan struct{} { return c.done }

// Exit returns how the child ended; valid once Done is closed.
func (c *Child) Exit() Exit {
	<-c.done
	return c.exit
}

var (
	mu       sync.Mutex
	children = map[int]*Child{}
	loopOnce sync.Once
	orphans  atomic.Uint64

	reapedMu sync.Mutex
	reaped   = make(chan struct{}) // closed and replaced after each round of reaps
)

// Reaped returns a channel that is closed once the wait loop next reaps a
// process, a child the agent started or an orphan. Take the channel first,
// then check what a reap could change, then wait on it: a reap in between
// closes the channel already taken, so none is missed.
func Reaped() <-chan struct{} {
	reapedMu.Lock()
	defer reapedMu.Unlock()
	return reaped
}

// announceReaps wakes every waiter on Reaped.
func announceReaps() {
	reapedMu.Lock()
	close(reaped)
	reaped = make(chan struct{})
	reapedMu.Unlock()
}

// Start starts cmd and registers it with the wait loop. The command's
// Stdin, Stdout and Stderr must be nil or *os.File, since no exec.Cmd.Wait
// will run to finish copying goroutines; a command built with
// exec.CommandContext is refused for the same reason.
func Start(cmd *exec.Cmd) (*Child, error) {
	if err := checkStartable(cmd); err != nil {
		return nil, err
	}
	loopOnce.Do(startLoop)
	mu.Lock()
	defer mu.Unlock()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	c := &Child{Pid: cmd.Process.Pid, proc: cmd.Process, done: make(chan struct{})}
	children[c.Pid] = c
	return c, nil
}

// Orphans counts the exits of processes the agent reaped without having
// started them (re-parented grandchildren).
func Orphans() uint64 { return orphans.Load() }

// BecomeSubreaper makes orphaned descendants re-parent to this process
// instead of to the system's init, so the wait loop reaps them. As PID 1 the
// process already is the reaper of its namespace and nothing is changed.
func BecomeSubreaper() error {
	loopOnce.Do(startLoop)
	if os.Getpid() == 1 {
		return nil
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", err)
	}
	return nil
}

func checkStartable(cmd *exec.Cmd) error {
	for _, s := range []any{cmd.Stdin, cmd.Stdout, cmd.Stderr} {
		switch s.(type) {
		case nil, *os.File:
		default:
			return errors.New("reaper: stdin, stdout and stderr must be nil or *os.File")
		}
	}
	if cmd.Cancel != nil {
		return errors.New("reaper: commands made with exec.CommandContext cannot be started here")
	}
	return nil
}

func startLoop() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGCHLD)
	go func() {
		for range sigs {
			reapAll()
		}
	}()
}

// reapAll collects every child that has exited so far, then announces
// the round to the waiters on Reaped.
func reapAll() {
	n := 0
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || pid <= 0 {
			break
		}
		deliver(pid, ws)
		n++
	}
	if n > 0 {
		announceReaps()
	}
}

func deliver(pid int, ws unix.WaitStatus) {
	exit := Exit{Code: ws.ExitStatus(), At: time.Now()}
	if ws.Signaled() {
		exit.Code, exit.Signal = -1, ws.Signal()
	}
	mu.Lock()
	c := children[pid]
	delete(children, pid)
	mu.Unlock()
	if c == nil {
		orphans.Add(1)
		return
	}
	c.exit = exit
	// The pidfd that os.StartProcess opened is no longer needed.
	_ = c.proc.Release()
	close(c.done)
}
