// Package supervisor runs processes the way PM2 did, done right: each in its
// own process group, restarted with exponential backoff until it proves
// unstable, stopped with SIGTERM then SIGKILL, measured as a whole process
// tree, with its output in rotated log files.
package supervisor

import (
	"fmt"
	"maps"
	"sort"
	"sync"
	"time"

	"github.com/coder-slots/coder-slots/agent/logs"
	"github.com/coder-slots/coder-slots/agent/procgroup"
)

// Supervisor owns a set of named processes.
type Supervisor struct {
	logDir  string
	logOpts logs.Options
	changes chan struct{}

	mu     sync.Mutex
	record func()
	procs  map[string]*Process
	gone   map[*Process]bool // removed, and still stopping
	sinks  map[string]*logs.Sink
	done   chan struct{}
	once   sync.Once // closes done
}

// New returns a supervisor writing logs under logDir and sampling CPU and
// memory every sampleEvery (0: never).
func New(logDir string, logOpts logs.Options, sampleEvery time.Duration) *Supervisor {
	s := &Supervisor{
		logDir:  logDir,
		logOpts: logOpts,
		changes: make(chan struct{}, 1),
		procs:   map[string]*Process{},
		gone:    map[*Process]bool{},
		sinks:   map[string]*logs.Sink{},
		done:    make(chan struct{}),
	}
	if sampleEvery > 0 {
		go s.sampleLoop(sampleEvery)
	}
	return s
}

// Changes delivers a signal (coalesced) whenever a process group starts or
// ends, so the owner can record the running process groups (see Groups).
// Status changes that leave the groups as they are do not signal: each
// signal may cost the owner a state file write.
func (s *Supervisor) Changes() <-chan struct{} { return s.changes }

func (s *Supervisor) notify() {
	select {
	case s.changes <- struct{}{}:
	default:
	}
}

// RecordWith makes record the way process groups are recorded (see Groups
// and Members): every process calls it, and waits until it returns, after
// its group is spawned and before its command runs (the group waits at a
// gate, and never runs its command if the agent dies first), and before
// its stop signal. record must save what Groups and Members return
// durably; so an agent killed at any moment leaves no process that the
// next agent cannot find. Ends of groups are signalled on Changes as
// before. Call it before adding processes.
func (s *Supervisor) RecordWith(record func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.record = record
}

// Add registers a process, stopped, replacing none: the name must be new.
func (s *Supervisor) Add(spec Spec) (*Process, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.procs[spec.Name]; ok {
		return nil, fmt.Errorf("process %q already exists", spec.Name)
	}
	if spec.Log == "" {
		spec.Log = spec.Name
	}
	sink, err := s.sinkLocked(spec.Log)
	if err != nil {
		return nil, err
	}
	sink.SetSecretsOf(spec.Name, spec.Secrets)
	p := &Process{spec: spec, sink: sink, groupsChanged: s.notify, record: s.record, info: Info{Name: spec.Name, Status: Stopped}}
	s.procs[spec.Name] = p
	return p, nil
}

// Logs returns the log files named name, opening them if needed.
func (s *Supervisor) Logs(name string) (*logs.Sink, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sinkLocked(name)
}

func (s *Supervisor) sinkLocked(name string) (*logs.Sink, error) {
	if sink, ok := s.sinks[name]; ok {
		return sink, nil
	}
	sink, err := logs.Open(s.logDir, name, s.logOpts)
	if err != nil {
		return nil, fmt.Errorf("open logs of %s: %w", name, err)
	}
	s.sinks[name] = sink
	return sink, nil
}

// Remove stops a process (see Process.StopWithin for grace) and forgets
// it; its log files stay open for the next process that uses them.
func (s *Supervisor) Remove(name string, grace time.Duration) {
	s.mu.Lock()
	p := s.procs[name]
	delete(s.procs, name)
	if p != nil {
		s.gone[p] = true // its group is listed until it is stopped
	}
	s.mu.Unlock()
	if p != nil {
		p.mu.Lock()
		p.removed = true
		p.mu.Unlock()
		p.StopWithin(grace)
		p.sink.DropSecretsOf(name) // it writes no more
		s.mu.Lock()
		delete(s.gone, p)
		s.mu.Unlock()
	}
}

// Get returns the named process.
func (s *Supervisor) Get(name string) (*Process, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.procs[name]
	return p, ok
}

// List returns every process, sorted by name.
func (s *Supervisor) List() []*Process {
	s.mu.Lock()
	out := make([]*Process, 0, len(s.procs))
	for _, p := range s.procs {
		out = append(out, p)
	}
	s.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].spec.Name < out[j].spec.Name })
	return out
}

// Groups returns the leader of every running process group by process
// name, those of removed processes still stopping included.
func (s *Supervisor) Groups() map[string]procgroup.Identity {
	out := map[string]procgroup.Identity{}
	for key, p := range s.everyProcess() {
		if id, ok := p.Leader(); ok {
			out[key] = id
		}
	}
	return out
}

// everyProcess returns the processes by name, and the removed ones still
// stopping by name plus " (removed)" and, when a new process took the name
// again, their PID.
func (s *Supervisor) everyProcess() map[string]*Process {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := maps.Clone(s.procs)
	for p := range s.gone {
		key := p.spec.Name + " (removed)"
		if _, taken := out[key]; taken {
			key = fmt.Sprintf("%s (removed, pid %d)", p.spec.Name, p.Info().PID)
		}
		out[key] = p
	}
	return out
}

// Members returns, by process name, the processes of every group whose
// stop has begun (see Process.Members).
func (s *Supervisor) Members() map[string][]procgroup.Identity {
	out := map[string][]procgroup.Identity{}
	for key, p := range s.everyProcess() {
		if m := p.Members(); len(m) > 0 {
			out[key] = m
		}
	}
	return out
}

// Close stops sampling and every process (in parallel, each within grace;
// see Process.StopWithin) and closes their logs. It may be called again.
func (s *Supervisor) Close(grace time.Duration) {
	s.once.Do(func() { close(s.done) })
	var wg sync.WaitGroup
	for _, p := range s.List() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.Remove(p.spec.Name, grace)
		}()
	}
	wg.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, sink := range s.sinks {
		_ = sink.Close()
		delete(s.sinks, name)
	}
}

func (s *Supervisor) sampleLoop(every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.sampleAll()
		case <-s.done:
			return
		}
	}
}

// sampleAll updates the CPU and memory figures of every running process
// from one scan of /proc, and scans nothing when none runs. The scan's
// own time is the sample's (not the tick's: on a loaded machine a tick is
// read late, and a busy thread measured 180 % over the ticks' interval).
func (s *Supervisor) sampleAll() {
	var running []*Process
	for _, p := range s.List() {
		if _, ok := p.Leader(); ok {
			running = append(running, p)
		}
	}
	if len(running) == 0 {
		return
	}
	snap, err := procgroup.TakeSnapshot()
	if err != nil {
		return
	}
	now := time.Now()
	for _, p := range running {
		p.sample(snap, now)
	}
}
