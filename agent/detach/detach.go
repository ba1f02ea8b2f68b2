// Package detach starts `slotagent run` as a service, the way the coder-slots
// module's script starts it beside the Coder agent: in a session of its own,
// stdin on /dev/null, stdout and stderr on its log file, no descriptor of
// the caller's inherited (a script runner waits for its pipes to close), and
// a readiness pipe on which the service says it is up or why it is not.
package detach

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ReadyEnv names the service's end of the readiness pipe (a descriptor
// number) in its environment.
const ReadyEnv = "SLOTAGENT_READY_FD"

// The service's answers on the readiness pipe.
const (
	readyLine = "ready"
	errPrefix = "error: "
)

// Start runs exe with args (argv[1:]) and env in the background as a
// service writing to logPath, and waits up to timeout for it to report.
// It returns the service's PID once it is up, or its one-line reason for
// not starting.
func Start(exe string, args, env []string, logPath string, timeout time.Duration) (int, error) {
	CloseInheritedOnExec()
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return 0, fmt.Errorf("detach: %w", err)
	}
	defer devnull.Close()
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, fmt.Errorf("detach: open the service's log: %w", err)
	}
	defer logFile.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("detach: %w", err)
	}
	defer r.Close()
	proc, err := os.StartProcess(exe, append([]string{exe}, args...), &os.ProcAttr{
		Env:   append(env, ReadyEnv+"=3"),
		Files: []*os.File{devnull, logFile, logFile, w},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	w.Close()
	if err != nil {
		return 0, fmt.Errorf("detach: start %s: %w", exe, err)
	}
	pid := proc.Pid
	// The service outlives this process: never wait for it here.
	_ = proc.Release()
	if err := r.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return 0, fmt.Errorf("detach: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(r, 64<<10))
	msg := strings.TrimSpace(string(b))
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return 0, fmt.Errorf("slotagent (pid %d) did not report its start within %s; see %s", pid, timeout, logPath)
	case err != nil:
		return 0, fmt.Errorf("detach: read the service's answer: %w", err)
	case msg == readyLine:
		return pid, nil
	case strings.HasPrefix(msg, errPrefix):
		return 0, errors.New(strings.TrimPrefix(msg, errPrefix))
	default:
		return 0, fmt.Errorf("slotagent (pid %d) exited during its start; the end of %s: %s", pid, logPath, lastLine(logPath))
	}
}

// Reporter is the service's end of the readiness pipe.
type Reporter struct{ f *os.File }

// FromEnv takes the readiness pipe that Start gave this process, if any
// (nil otherwise; a nil Reporter reports nothing). Call it first thing:
// it marks the pipe close-on-exec, so that no process started afterwards
// holds it open, and takes its variable out of the environment.
func FromEnv() *Reporter {
	s, ok := os.LookupEnv(ReadyEnv)
	if !ok {
		return nil
	}
	os.Unsetenv(ReadyEnv)
	fd, err := strconv.Atoi(s)
	if err != nil || fd < 3 {
		return nil
	}
	unix.CloseOnExec(fd)
	return &Reporter{f: os.NewFile(uintptr(fd), "ready")}
}

// Report tells the process that started this one with Start how the start
// went (err nil: up), and closes the pipe.
func (r *Reporter) Report(err error) {
	if r == nil || r.f == nil {
		return
	}
	msg := readyLine
	if err != nil {
		msg = errPrefix + strings.Join(strings.Fields(err.Error()), " ")
	}
	_, _ = io.WriteString(r.f, msg+"\n")
	r.f.Close()
	r.f = nil
}

// CloseInheritedOnExec marks every descriptor above stderr close-on-exec:
// Go's own are already, but those this process inherited (a pipe of the
// script that runs it, a lock held by flock(1)) would otherwise reach every
// process it starts, and outlive it in those that outlive it.
func CloseInheritedOnExec() {
	if unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC) == nil {
		return
	}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return
	}
	for _, e := range entries {
		if fd, err := strconv.Atoi(e.Name()); err == nil && fd > 2 {
			_, _ = unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
		}
	}
}

// lastLine is the last non-empty line of a file (within its last 4 KiB),
// or why there is none.
func lastLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if info, err := f.Stat(); err == nil && info.Size() > 4096 {
		_, _ = f.Seek(-4096, io.SeekEnd)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}
