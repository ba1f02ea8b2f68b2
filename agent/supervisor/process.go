package supervisor

import (
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/coder-slots/coder-slots/agent/logs"
	"github.com/coder-slots/coder-slots/agent/procgroup"
	"github.com/coder-slots/coder-slots/agent/reaper"
)

// Status is a process's state, with PM2's names.
type Status string

// The statuses a process goes through.
const (
	Launching      Status = "launching"
	Online         Status = "online"
	Stopping       Status = "stopping"
	Stopped        Status = "stopped"
	Errored        Status = "errored"
	WaitingRestart Status = "waiting-restart"
)

// Spec is what to run and how.
type Spec struct {
	// Name identifies the process.
	Name string `json:"name"`
	// Log names the log files (<Log>-out.log, …); empty means Name. Several
	// processes may share one (the old and new release of a slot).
	Log string `json:"log,omitempty"`
	// Command is the argv; a command line runs as {"sh", "-c", line}.
	Command []string `json:"command"`
	// Dir is the working directory.
	Dir string `json:"cwd,omitempty"`
	// Env is the complete environment, as "KEY=value".
	Env []string `json:"-"`
	// ShownEnv is the environment as it may be displayed: the process's own
	// variables, secret values masked.
	ShownEnv map[string]string `json:"env,omitempty"`
	// Secrets are values masked in the process's logs.
	Secrets []string `json:"-"`
	// Policy is the restart and stop policy.
	Policy Policy `json:"policy"`
	// Credential, when set, runs the process as another user (the agent
	// runs as root and the process refuses to, like PostgreSQL).
	Credential *syscall.Credential `json:"-"`
	// StopSignal asks the process to stop; 0 means SIGTERM. SIGKILL
	// follows after the kill timeout either way.
	StopSignal syscall.Signal `json:"-"`
}

// stopSignal is the signal that asks the process to stop.
func (s Spec) stopSignal() syscall.Signal {
	if s.StopSignal == 0 {
		return syscall.SIGTERM
	}
	return s.StopSignal
}

// Info is a snapshot of a process for status displays.
type Info struct {
	Name      string    `json:"name"`
	Status    Status    `json:"status"`
	PID       int       `json:"pid"`
	StartedAt time.Time `json:"started_at"`
	Restarts  int       `json:"restarts"`
	Unstable  int       `json:"unstable_restarts"`
	// CPU is the whole tree's CPU use in percent of one core.
	CPU float64 `json:"cpu"`
	// Memory is the whole tree's RSS in bytes.
	Memory   uint64 `json:"memory"`
	LastExit string `json:"last_exit,omitempty"`
	// ExitedAt is when the process last exited (or failed to start)
	// without being asked to stop: a crash, or its memory limit.
	ExitedAt time.Time `json:"exited_at,omitzero"`
	// ExitCode is the last exit code (-1 after a signal).
	ExitCode int `json:"exit_code"`
	// Reason explains the status, e.g. why the process is errored.
	Reason string `json:"reason,omitempty"`
}

// Uptime is how long the process has been online, or 0.
func (i Info) Uptime() time.Duration {
	if i.Status != Online || i.StartedAt.IsZero() {
		return 0
	}
	return time.Since(i.StartedAt)
}

// Process is one supervised process. Its lifecycle runs in one goroutine
// (the loop) from Start until it is stopped or errored.
type Process struct {
	spec Spec
	sink *logs.Sink
	// groupsChanged is called when the process's group starts or ends.
	groupsChanged func()
	// record, when set, records the groups durably; see
	// Supervisor.RecordWith.
	record func()

	mu       sync.Mutex
	info     Info
	leader   procgroup.Identity
	members  []procgroup.Identity // the group's processes when its stop began
	stopCh   chan struct{}        // closed to ask the loop to stop; nil when no loop runs
	loopDone chan struct{}
	grace    time.Duration // SIGTERM→SIGKILL wait of the stop under way
	hurry    chan struct{} // closed to send SIGKILL now, ending a stop's wait early
	removed  bool          // the supervisor forgot it: it never starts again
	lastCPU  time.Duration
	lastAt   time.Time
}

// Spec returns the process's spec.
func (p *Process) Spec() Spec { return p.spec }

// Logs returns the process's log files.
func (p *Process) Logs() *logs.Sink { return p.sink }

// Info returns a snapshot of the process.
func (p *Process) Info() Info {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.info
}

// Members returns the processes of the group as they were when its stop
// began (the leader may exit first and leave the others draining), or nil
// when no stop is under way.
func (p *Process) Members() []procgroup.Identity {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.members)
}

// Leader returns the identity of the running process group leader, if any.
func (p *Process) Leader() (procgroup.Identity, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.leader, p.leader.PID != 0
}

// Start launches the process unless its loop already runs; an errored or
// stopped process starts over with fresh restart counters.
func (p *Process) Start() {
	p.mu.Lock()
	if p.stopCh != nil || p.removed {
		p.mu.Unlock()
		return
	}
	p.stopCh = make(chan struct{})
	p.loopDone = make(chan struct{})
	p.hurry = make(chan struct{})
	p.info.Unstable = 0
	p.info.Reason = ""
	// Launching at once, so no caller sees the old "stopped" or "errored"
	// after Start returned.
	p.info.Status = Launching
	go p.loop(p.stopCh, p.loopDone)
	p.mu.Unlock()
}

// Stop stops the process (SIGTERM to its group, SIGKILL after the kill
// timeout) and waits until it and everything it spawned are gone.
func (p *Process) Stop() { p.StopWithin(0) }

// StopWithin is Stop with the wait before SIGKILL shortened to grace when
// grace is positive and shorter than the kill timeout (agent shutdown). A
// stop already under way with a longer wait sends SIGKILL once grace has
// passed.
func (p *Process) StopWithin(grace time.Duration) {
	p.mu.Lock()
	stop, done, hurry := p.stopCh, p.loopDone, p.hurry
	if stop == nil {
		p.mu.Unlock()
		return
	}
	// Check and close under the lock: two concurrent stops must not both
	// find the channel open and both close it (a panic).
	select {
	case <-stop:
		if grace > 0 && grace < p.grace {
			p.grace = grace
			go p.hurryAfter(grace, hurry, done)
		}
	default:
		p.grace = p.spec.Policy.KillTimeout
		if grace > 0 && grace < p.grace {
			p.grace = grace
		}
		close(stop)
	}
	p.mu.Unlock()
	<-done
}

// hurryAfter closes hurry after grace unless the loop ends first.
func (p *Process) hurryAfter(grace time.Duration, hurry, done <-chan struct{}) {
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-t.C:
	case <-done:
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.hurry == hurry {
		select {
		case <-p.hurry:
		default:
			close(p.hurry)
		}
	}
}

// Restart stops the process if it runs and starts it again, counting a restart.
func (p *Process) Restart() {
	p.Stop()
	p.mu.Lock()
	p.info.Restarts++
	p.mu.Unlock()
	p.Start()
}

func (p *Process) set(f func(*Info)) {
	p.mu.Lock()
	f(&p.info)
	p.mu.Unlock()
}

func (p *Process) note(format string, args ...any) {
	fmt.Fprintf(p.sink.Writer(logs.Stdout), "[slotagent] "+format+"\n", args...)
}

// loop runs the process until it is stopped or errored.
func (p *Process) loop(stop, done chan struct{}) {
	defer close(done)
	backoffN := 0
	var delay time.Duration
	for {
		if delay > 0 {
			p.set(func(i *Info) { i.Status = WaitingRestart })
			select {
			case <-time.After(delay):
			case <-stop:
				p.finish(Stopped, "")
				return
			}
		}
		p.set(func(i *Info) { i.Status = Launching })
		exit, reason, err := p.runOnce(stop)
		if errors.Is(err, errStopped) {
			p.finish(Stopped, "")
			return
		}
		// Up from online to the reap: neither the spawn nor the clean-up
		// after the exit (group kill, log drain) counts.
		var uptime time.Duration
		if err == nil {
			uptime = max(0, exit.At.Sub(p.Info().StartedAt))
		}
		if err != nil {
			reason = "failed to start: " + err.Error()
			p.note("%s", reason)
		} else {
			p.note("%s after %s%s", exit, uptime.Round(time.Millisecond), reasonSuffix(reason))
		}
		p.mu.Lock()
		hadGroup := p.leader.PID != 0
		p.leader, p.members = procgroup.Identity{}, nil // gone; Groups() must not list it while waiting
		p.info.PID, p.info.CPU, p.info.Memory = 0, 0, 0
		p.info.LastExit, p.info.ExitCode, p.info.ExitedAt = exit.String(), exit.Code, exit.At
		if err != nil {
			p.info.LastExit, p.info.ExitCode, p.info.ExitedAt = "failed to start", -1, time.Now()
		}
		p.mu.Unlock()
		if hadGroup {
			p.groupsChanged()
		}
		pol := p.spec.Policy
		if err != nil && (errors.Is(err, errEmptyCommand) || !pol.Autorestart) {
			// Retrying cannot help, or is not wanted: say why at once.
			p.note("errored: %s", reason)
			p.finish(Errored, reason)
			return
		}
		if reason == "" && !pol.Autorestart {
			p.finish(Stopped, "exited and autorestart is off")
			return
		}
		unstable := p.countUnstable(uptime < pol.MinUptime)
		if pol.MaxRestarts > 0 && unstable >= pol.MaxRestarts {
			why := fmt.Sprintf("%d unstable restarts (each up less than %s)", unstable, pol.MinUptime)
			if reason != "" {
				why += "; last: " + reason
			}
			p.note("errored: %s; not restarting until told to", why)
			p.finish(Errored, why)
			return
		}
		if uptime >= pol.StableUptime {
			backoffN = 0
		}
		delay = pol.backoff(backoffN)
		backoffN++
		p.set(func(i *Info) { i.Restarts++ })
		if delay == 0 {
			p.note("restarting now")
		} else {
			p.note("restarting in %s", delay.Round(time.Millisecond))
		}
	}
}

func reasonSuffix(reason string) string {
	if reason == "" {
		return ""
	}
	return " (" + reason + ")"
}

// countUnstable updates and returns the count of unstable restarts in a row.
func (p *Process) countUnstable(unstable bool) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if unstable {
		p.info.Unstable++
	} else {
		p.info.Unstable = 0
	}
	return p.info.Unstable
}

func (p *Process) finish(status Status, reason string) {
	p.mu.Lock()
	p.info.Status = status
	p.info.Reason = reason
	p.info.PID, p.info.CPU, p.info.Memory = 0, 0, 0
	hadGroup := p.leader.PID != 0
	p.leader, p.members = procgroup.Identity{}, nil
	p.stopCh, p.loopDone = nil, nil
	p.mu.Unlock()
	if hadGroup {
		p.groupsChanged()
	}
}

var (
	errStopped      = errors.New("stopped")
	errEmptyCommand = errors.New("empty command")
)

// runOnce starts the process and waits until it exits, is stopped (returns
// errStopped) or passes its memory limit (returns a reason).
func (p *Process) runOnce(stop <-chan struct{}) (reaper.Exit, string, error) {
	child, logged, gate, err := p.spawn()
	if err != nil {
		return reaper.Exit{}, "", err
	}
	// Every way out ends the whole tree first; then the last lines it wrote
	// are logged before the exit is noted (a deploy shows the log's tail as
	// soon as the process is down). Something that escaped the tree and
	// keeps the pipe open must not block the loop for long.
	defer func() {
		select {
		case <-logged:
		case <-time.After(2 * time.Second):
		}
	}()
	id, err := procgroup.Lookup(child.Pid)
	if err != nil {
		id = procgroup.Identity{PID: child.Pid}
	}
	p.mu.Lock()
	p.leader = id
	p.info.Status, p.info.PID, p.info.StartedAt = Online, child.Pid, time.Now()
	p.lastCPU, p.lastAt = 0, time.Now()
	p.mu.Unlock()
	p.recordGroups()
	// Recorded: the command may run now.
	gate.Open()

	var memCheck <-chan time.Time
	if pol := p.spec.Policy; pol.MaxMemory > 0 && pol.MemoryCheckInterval > 0 {
		t := time.NewTicker(pol.MemoryCheckInterval)
		defer t.Stop()
		memCheck = t.C
	}
	for {
		select {
		case <-child.Done():
			// The leader is gone; whatever it left in its group goes too.
			p.terminate(child, 0)
			return child.Exit(), "", nil
		case <-stop:
			var grace time.Duration
			p.set(func(i *Info) { i.Status, grace = Stopping, p.grace })
			p.terminate(child, grace)
			return child.Exit(), "", errStopped
		case <-memCheck:
			u, err := procgroup.TreeUsage(child.Pid)
			if err != nil || u.RSS <= p.spec.Policy.MaxMemory {
				continue
			}
			reason := fmt.Sprintf("max_memory_restart: %s > %s", mib(u.RSS), mib(p.spec.Policy.MaxMemory))
			p.note("%s, restarting", reason)
			p.set(func(i *Info) { i.Status = Stopping })
			p.terminate(child, p.spec.Policy.KillTimeout)
			return child.Exit(), reason, nil
		}
	}
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// recordGroups has the process's group recorded: durably and at once
// with a recorder, else by a signal on the supervisor's Changes.
func (p *Process) recordGroups() {
	if p.record != nil {
		p.record()
	} else {
		p.groupsChanged()
	}
}

// spawn starts the process, held at its gate (see reaper.StartGated) until
// the caller opens it; logged closes once its output pipes are closed and
// every line is written.
func (p *Process) spawn() (child *reaper.Child, logged <-chan struct{}, gate *reaper.Gate, err error) {
	if len(p.spec.Command) == 0 {
		return nil, nil, nil, errEmptyCommand
	}
	outW, outDone, err := p.sink.Pipe(logs.Stdout)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("log pipe: %w", err)
	}
	errW, errDone, err := p.sink.Pipe(logs.Stderr)
	if err != nil {
		outW.Close()
		<-outDone
		return nil, nil, nil, fmt.Errorf("log pipe: %w", err)
	}
	// Found on the agent's PATH, and a missing program fails the start
	// rather than the gate's exec.
	cmd := exec.Command(p.spec.Command[0], p.spec.Command[1:]...)
	cmd.Dir = p.spec.Dir
	cmd.Env = p.spec.Env
	cmd.Stdout, cmd.Stderr = outW, errW
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: p.spec.Credential}
	child, gate, err = reaper.StartGated(cmd)
	outW.Close()
	errW.Close()
	if err != nil {
		<-outDone
		<-errDone
		return nil, nil, nil, err
	}
	both := make(chan struct{})
	go func() {
		<-outDone
		<-errDone
		close(both)
	}()
	return child, both, gate, nil
}

// terminate ends the process group of child and every descendant that left
// the group: the stop signal, then SIGKILL once grace has passed. It returns
// when the leader is reaped and the group and the strays are gone.
func (p *Process) terminate(child *reaper.Child, grace time.Duration) {
	pgid := child.Pid
	strays := descendants(child, nil)
	if len(strays) > 0 {
		// The leader may exit on the signal and leave the others
		// draining: recorded by identity, they are found without it.
		p.mu.Lock()
		p.members = strays
		p.mu.Unlock()
		p.recordGroups()
	}
	sig := p.spec.stopSignal()
	signalAll(pgid, strays, sig)
	if grace > 0 {
		p.mu.Lock()
		hurry := p.hurry
		p.mu.Unlock()
		if waitGone(child, pgid, strays, grace, 10*time.Millisecond, hurry) {
			return
		}
		p.note("still running %s after %s, sending SIGKILL", grace, unix.SignalName(sig))
	}
	strays = descendants(child, strays) // the tree may have grown since
	signalAll(pgid, strays, syscall.SIGKILL)
	<-child.Done()
	// SIGKILL takes effect asynchronously: wait until the strays are gone
	// too, or one may still hold its port when the stop returns.
	if !waitGone(child, pgid, strays, killWait, 5*time.Millisecond, nil) {
		p.note("process group %d still not gone %s after SIGKILL (a process in uninterruptible sleep, or a zombie whose parent does not reap it): no longer waiting", pgid, killWait)
	}
}

// killWait bounds the wait for a process group to be gone after SIGKILL.
const killWait = 2 * time.Second

// waitGone waits at most timeout until child is reaped and its process
// group and the strays are gone, and reports whether they are. It checks
// again whenever the wait loop reaps something (the leader, or what is left
// of its group, re-parented to the agent as a subreaper), and every poll
// for the exits the agent does not reap (a process whose parent lives on,
// or every orphan when the agent is no subreaper). It gives up early, with
// false, when hurry closes.
func waitGone(child *reaper.Child, pgid int, strays []procgroup.Identity, timeout, poll time.Duration, hurry <-chan struct{}) bool {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		reaped := reaper.Reaped() // before the check: a reap after it wakes the wait
		select {
		case <-child.Done():
			if !procgroup.GroupAlive(pgid) && !anyAlive(strays) {
				return true
			}
		default:
		}
		select {
		case <-reaped:
		case <-tick.C:
		case <-deadline.C:
			return false
		case <-hurry:
			return false
		}
	}
}

// descendants adds the descendants of child's leader to known. Once the
// leader is reaped it adds nothing: its children were re-parented, and its
// PID may belong to an unrelated process by now.
func descendants(child *reaper.Child, known []procgroup.Identity) []procgroup.Identity {
	select {
	case <-child.Done():
		return known
	default:
	}
	for _, pid := range procgroup.Descendants(child.Pid) {
		id, err := procgroup.Lookup(pid)
		if err == nil && !slices.Contains(known, id) {
			known = append(known, id)
		}
	}
	return known
}

func signalAll(pgid int, ids []procgroup.Identity, sig syscall.Signal) {
	_ = syscall.Kill(-pgid, sig)
	for _, id := range ids {
		if exists(id) {
			_ = syscall.Kill(id.PID, sig)
		}
	}
}

// exists reports whether id's process still exists, even as a zombie, so a
// reused PID is neither signalled nor waited for.
func exists(id procgroup.Identity) bool {
	cur, err := procgroup.Lookup(id.PID)
	return err == nil && cur == id
}

func anyAlive(ids []procgroup.Identity) bool {
	return slices.ContainsFunc(ids, exists)
}

// sample updates the CPU and memory figures of a running process from
// snap, taken at now.
func (p *Process) sample(snap *procgroup.Snapshot, now time.Time) {
	p.mu.Lock()
	pid, lastCPU, lastAt := p.info.PID, p.lastCPU, p.lastAt
	p.mu.Unlock()
	if pid == 0 {
		return
	}
	u, err := snap.TreeUsage(pid)
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.info.PID != pid {
		return
	}
	if wall := now.Sub(lastAt); wall > 0 && lastCPU > 0 && u.CPUTime >= lastCPU {
		p.info.CPU = 100 * float64(u.CPUTime-lastCPU) / float64(wall)
	}
	p.info.Memory = u.RSS
	p.lastCPU, p.lastAt = u.CPUTime, now
}
