// Package daemon is `slotagent run`: it wires the supervisor, the slots, the
// state file, the admin server and the control socket together, cleans up
// after an unclean stop, rehydrates the slots at boot and shuts down in order.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/coder-slots/coder-slots/agent/admin"
	"github.com/coder-slots/coder-slots/agent/config"
	"github.com/coder-slots/coder-slots/agent/deploy"
	"github.com/coder-slots/coder-slots/agent/follow"
	"github.com/coder-slots/coder-slots/agent/gitpush"
	"github.com/coder-slots/coder-slots/agent/history"
	"github.com/coder-slots/coder-slots/agent/logs"
	"github.com/coder-slots/coder-slots/agent/postgres"
	"github.com/coder-slots/coder-slots/agent/procgroup"
	"github.com/coder-slots/coder-slots/agent/reaper"
	"github.com/coder-slots/coder-slots/agent/slot"
	"github.com/coder-slots/coder-slots/agent/state"
	"github.com/coder-slots/coder-slots/agent/supervisor"
)

// CoderAgentName is the process name of the supervised Coder agent.
const CoderAgentName = "coder-agent"

// Agent is a running slotagent.
type Agent struct {
	cfg       *config.Config
	log       *slog.Logger
	version   string
	started   time.Time
	lock      *os.File
	sup       *supervisor.Supervisor
	jobs      *procgroup.Registry // the deploys' commands (git, install, build) and the follow checks' git ls-remote
	slots     map[string]*slot.Slot
	deployer  *deploy.Deployer
	follower  *follow.Follower
	hist      *history.History
	pg        *postgres.Server
	admin     *http.Server
	adminLn   net.Listener
	control   *http.Server
	controlLn net.Listener

	stateMu sync.Mutex // guards st and serialises saves
	st      *state.State

	warnings  []string // problems found at start, shown by /healthz and validate
	stateLost bool     // the state file was moved aside: keep every release folder

	quit      chan struct{}
	saverDone chan struct{}
}

// Start brings the agent up: lock the data dir, kill what an earlier agent
// left running, bind every port, rehydrate the slots from the state file and
// serve the admin API and the control socket.
func Start(cfg *config.Config, log *slog.Logger, version string) (*Agent, error) {
	a := &Agent{cfg: cfg, log: log, version: version, started: time.Now(), slots: map[string]*slot.Slot{},
		jobs: procgroup.NewRegistry("deploy-command-")}
	if err := os.MkdirAll(cfg.LogDir(), 0o700); err != nil {
		return nil, fmt.Errorf("create log dir: %w", err)
	}
	if err := a.lockDataDir(); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			a.closeEarly()
		}
	}()
	if err := reaper.BecomeSubreaper(); err != nil {
		log.Warn("orphaned processes will not be reaped by the agent", "err", err)
	}
	if err := a.loadState(); err != nil {
		return nil, err
	}
	a.killLeftovers()
	a.refreshGitHooks()
	a.sup = supervisor.New(cfg.LogDir(), logs.Options{MaxSizeMB: cfg.LogMaxSizeMB, MaxBackups: cfg.LogMaxBackups}, 2*time.Second)
	a.sup.RecordWith(a.recordGroups)
	a.jobs.RecordWith(a.recordGroups)
	a.preparePostgres()
	if err := a.listen(); err != nil {
		return nil, err
	}
	a.quit, a.saverDone = make(chan struct{}), make(chan struct{})
	go a.saveOnChange()
	go a.sampleHistory()
	switch {
	case cfg.CoderAgentInitScript == "":
	case cfg.Role == config.RoleService:
		// The Coder agent that runs the workspace is someone else's.
		log.Warn("not running the Coder agent: CODER_AGENT_INIT_SCRIPT is set, but a service leaves the Coder agent to its template", "role", cfg.Role)
	default:
		if err := a.startCoderAgent(); err != nil {
			return nil, err
		}
	}
	a.rehydrate()
	a.follower.Start()
	if err := a.saveGroups(); err != nil {
		return nil, fmt.Errorf("save state: %w", err)
	}
	a.serve()
	a.startPostgres()
	ok = true
	return a, nil
}

// lockDataDir makes sure only one agent uses the data dir.
func (a *Agent) lockDataDir() error {
	f, err := LockDataDir(a.cfg.DataDir)
	if err != nil {
		return err
	}
	a.lock = f
	return nil
}

// ErrLocked is LockDataDir's error when another agent holds the lock.
var ErrLocked = errors.New("another slotagent is already running with this data dir")

// LockDataDir takes the data dir's single-instance lock (an flock on
// slotagent.lock, released by the kernel however the holder ends, and not
// inherited by the processes it starts). It fails with an error wrapping
// ErrLocked when another agent holds it.
func LockDataDir(dataDir string) (*os.File, error) {
	path := filepath.Join(dataDir, "slotagent.lock")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w (%s)", ErrLocked, dataDir)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

// loadState reads the state file. A file that cannot be used is moved
// aside (never deleted) and the agent starts empty with a visible warning:
// as the container's entrypoint it must come up, or nobody can get in to
// repair anything.
func (a *Agent) loadState() error {
	path := a.cfg.StatePath()
	st, err := state.Load(path)
	if errors.Is(err, fs.ErrNotExist) {
		a.log.Info("first boot: no state file", "path", path)
		a.st = state.New()
		return nil
	}
	if err == nil {
		err = state.Validate(st)
	}
	if err == nil {
		a.st = st
		return nil
	}
	aside := fmt.Sprintf("%s.broken-%s", path, time.Now().UTC().Format("20060102T150405Z"))
	if rerr := os.Rename(path, aside); rerr != nil {
		return fmt.Errorf("state file %s is unusable (%v) and cannot be moved aside: %w", path, err, rerr)
	}
	a.warn(fmt.Sprintf("state file was unusable and was moved to %s; the slots start empty: %v", aside, err))
	a.stateLost = true
	a.st = state.New()
	return nil
}

// warn logs a problem found at start and keeps it for /healthz and
// validate (only before the agent serves: warnings is not guarded).
func (a *Agent) warn(msg string) {
	a.log.Error(msg)
	a.warnings = append(a.warnings, msg)
}

// refreshGitHooks points the hooks of the slots' git repositories at this
// binary, which may have moved since they were made.
func (a *Agent) refreshGitHooks() {
	exe, err := os.Executable()
	if err == nil {
		err = gitpush.Refresh(a.cfg.DataDir, config.SlotNames, exe)
	}
	if err != nil {
		a.log.Warn("git push to the slots may not deploy: cannot update their hooks", "err", err)
	}
}

// killLeftovers ends the process groups an earlier agent recorded, when
// their leaders are still the same processes (PID and start time match),
// and the recorded members of groups whose stop had begun, each when it is
// still the same process.
func (a *Agent) killLeftovers() {
	a.killMembers()
	groups := a.st.Groups
	if len(groups) == 0 {
		return
	}
	var alive []procgroup.Identity
	for name, id := range groups {
		if sent, err := procgroup.KillGroup(id, syscall.SIGTERM); sent {
			a.log.Warn("killing process group left by an earlier agent", "process", name, "pgid", id.PID)
			alive = append(alive, id)
		} else if err != nil {
			a.log.Warn("cannot check leftover process group", "process", name, "err", err)
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for _, id := range alive {
		for procgroup.GroupAlive(id.PID) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		// The leader may have exited on SIGTERM while members remain: a
		// group that still has members keeps its ID, so it is the same group.
		if procgroup.GroupAlive(id.PID) {
			_ = syscall.Kill(-id.PID, syscall.SIGKILL)
		}
	}
	for _, id := range alive {
		for end := time.Now().Add(2 * time.Second); procgroup.GroupAlive(id.PID) && time.Now().Before(end); {
			time.Sleep(10 * time.Millisecond)
		}
	}
	a.st.Groups = nil
}

// killMembers kills the recorded members of groups whose stop had begun
// (with SIGKILL: the earlier agent had asked them to stop already) and
// waits until they are gone.
func (a *Agent) killMembers() {
	var killed []procgroup.Identity
	for name, ids := range a.st.Members {
		for _, id := range ids {
			if procgroup.Kill(id, syscall.SIGKILL) {
				a.log.Warn("killing a process left stopping by an earlier agent", "process", name, "pid", id.PID)
				killed = append(killed, id)
			}
		}
	}
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if !slices.ContainsFunc(killed, procgroup.Identity.Alive) {
			break
		}
	}
	a.st.Members = nil
}

// listen makes the deployer (which settles the pushes a dead agent left
// pending, so the slots know which release they await) and binds every
// port before any app starts, so a port that is taken fails the start with
// a clear error; the admin port and control socket are served later, by
// serve.
func (a *Agent) listen() error {
	metrics := admin.NewMetrics()
	a.hist = history.Open(a.cfg.HistoryDir(), config.SlotNames, a.warn)
	maxConns := slotConnCap(a.cfg.MaxConnsPerSlot, len(a.cfg.Slots), a.log)
	dc := a.cfg.Deploy
	dcfg := deploy.DefaultConfig(a.cfg.DataDir)
	dcfg.Env = appBaseEnv()
	dcfg.Health = deploy.HealthConfig{ListenTimeout: dc.HealthListenTimeout, Attempts: dc.HealthAttempts,
		Interval: dc.HealthInterval, Timeout: dc.HealthTimeout}
	dcfg.Drain, dcfg.KeepReleases = dc.DrainTimeout, dc.KeepReleases
	dcfg.Tracker = a.jobs
	dcfg.OnFinish = func(rec deploy.Record) {
		metrics.ObserveDeploy(rec)
		a.markDeploy(rec)
		if rec.Trigger != deploy.TriggerFollow {
			a.follower.Kick(rec.Slot) // a manual deploy pauses following: show it now
		}
	}
	var err error
	a.deployer, err = deploy.New(dcfg, a.slotByName, a, config.SlotNames, !a.stateLost, a.log)
	if err != nil {
		return fmt.Errorf("deploys: %w", err)
	}
	for _, sc := range a.cfg.Slots {
		s, err := slot.Listen(slot.Config{
			Name:        sc.Name,
			Bind:        a.cfg.Bind,
			Port:        sc.Port,
			URL:         sc.URL,
			AdminURL:    a.cfg.AdminURL,
			Policy:      a.cfg.Policy,
			BaseEnv:     appBaseEnv(),
			Await:       a.awaited(sc.Name),
			Observe:     observeRequest(metrics, a.hist.Slot(sc.Name)),
			DBEnv:       a.pg.SlotEnv(sc.Name),
			Log:         a.log.With("slot", sc.Name),
			IdleTimeout: a.cfg.IdleTimeout,
			MaxConns:    maxConns,
			Refused:     metrics.ObserveRefusedConn,
		}, a.sup)
		if err != nil {
			return fmt.Errorf("%w (%s)", err, config.Describe("slots."+sc.Name+".port"))
		}
		a.slots[sc.Name] = s
	}
	a.follower = follow.New(follow.Config{Env: dcfg.Env, Stop: a.StopSlot, Log: a.log.With("part", "follow"), Tracker: a.jobs},
		a.deployer, a, config.SlotNames)
	api := admin.New(a, a.deployer, metrics, a.log)
	addr := net.JoinHostPort(a.cfg.Bind, strconv.Itoa(a.cfg.AdminPort))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("admin panel: listen on %s: %w (%s)", addr, err, config.Describe("admin_port"))
	}
	var trusted []string
	if a.cfg.AdminURL != "" {
		trusted = append(trusted, originOf(a.cfg.AdminURL))
	}
	browser, err := api.Browser(admin.NewHosts(a.cfg.AdminURL, a.cfg.AdminAllowedHosts), trusted...)
	if err != nil {
		return fmt.Errorf("%w (%s)", err, config.Describe("admin_url"))
	}
	a.admin = admin.NewServer(browser, a.cfg.IdleTimeout)
	a.adminLn = ln

	sock := a.cfg.SocketPath()
	_ = os.Remove(sock) // stale: the data dir lock proves no agent owns it
	old := unix.Umask(0o177)
	sln, err := net.Listen("unix", sock)
	unix.Umask(old)
	if err != nil {
		return fmt.Errorf("control socket %s: %w", sock, err)
	}
	a.control = admin.NewServer(api.Control(), a.cfg.IdleTimeout)
	a.controlLn = sln
	return nil
}

// awaited is slot name's app when the state file has one to bring back:
// the slot answers "starting" until it serves (see slot.Slot.Await),
// never the empty slot's placeholder.
func (a *Agent) awaited(name string) slot.Awaited {
	ss := a.st.Slots[name]
	if ss == nil || ss.Desired != state.DesiredRunning || ss.Current == "" {
		return slot.Awaited{}
	}
	return slot.Awaited{Release: ss.Current, Reason: "release " + ss.Current + " is starting"}
}

// serve starts answering on the admin port and the control socket, once
// the slots are rehydrated (the apps that wait for PostgreSQL excepted).
func (a *Agent) serve() {
	go func() { _ = a.admin.Serve(a.adminLn) }()
	go func() { _ = a.control.Serve(a.controlLn) }()
}

// originOf is scheme://host[:port] of a URL.
func originOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return u.Scheme + "://" + u.Host
}

// slotByName returns the slot named name, or nil.
func (a *Agent) slotByName(name string) *slot.Slot { return a.slots[name] }

// appBaseEnv is the agent's environment without what apps must not see.
func appBaseEnv() []string {
	var out []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "CODER_AGENT_") || strings.HasPrefix(k, "SLOTAGENT_") || k == "PORT" {
			continue
		}
		out = append(out, kv)
	}
	return out
}

func (a *Agent) startCoderAgent() error {
	pol := supervisor.DefaultPolicy()
	pol.MaxRestarts = 0 // restarted always
	p, err := a.sup.Add(supervisor.Spec{
		Name:    CoderAgentName,
		Command: []string{"sh", "-c", a.cfg.CoderAgentInitScript},
		Env:     os.Environ(),
		Policy:  pol,
	})
	if err != nil {
		return err
	}
	p.Start()
	return nil
}

// rehydrate starts every slot's current release from disk; the releases
// that use the workspace database start once it is ready (see
// waitsForDatabase). A release that is missing leaves the placeholder with
// a visible error.
func (a *Agent) rehydrate() {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	for name, ss := range a.st.Slots {
		s := a.slots[name]
		if s == nil || ss.Desired != state.DesiredRunning || ss.Current == "" {
			continue
		}
		rel, _ := ss.Find(ss.Current)
		sr := toSlotRelease(rel, ss.Env)
		if a.waitsForDatabase(name, sr) {
			err := a.deployer.RehydrateAfter(name, sr, "release "+rel.ID+" starts once PostgreSQL is ready", a.databaseReady)
			if err != nil {
				a.log.Error("cannot bring back the app", "slot", name, "release", rel.ID, "err", err)
			} else {
				a.hist.Slot(name).Mark(history.Start, "", "agent started", 0)
			}
			continue
		}
		if err := a.deployer.Rehydrate(name, sr); err != nil {
			a.log.Error("cannot bring back the app", "slot", name, "release", rel.ID, "err", err)
			s.SetError(fmt.Sprintf("release %s could not be started: %v", rel.ID, err))
			continue
		}
		a.hist.Slot(name).Mark(history.Start, "", "agent started", 0)
		a.log.Info("rehydrated", "slot", name, "release", rel.ID)
	}
}

func toSlotRelease(rel state.Release, slotEnv map[string]string) slot.Release {
	env := map[string]string{}
	for k, v := range slotEnv {
		env[k] = v
	}
	for k, v := range rel.Env {
		env[k] = v
	}
	return slot.Release{ID: rel.ID, Dir: rel.Dir, Command: rel.Command, Env: env, Path: rel.Path, Static: rel.Static, SPA: rel.SPA, Language: rel.Language, Plan: rel.Plan}
}

// saveOnChange records the running process groups whenever one starts or stops.
func (a *Agent) saveOnChange() {
	defer close(a.saverDone)
	for {
		select {
		case <-a.sup.Changes():
		case <-a.jobs.Changes():
		case <-a.quit:
			return
		}
		a.recordGroups()
	}
}

// recordGroups saves the running process groups, logging a failure: the
// supervisor's processes wait for it before their commands run and before
// their stop signals (see supervisor.Supervisor.RecordWith).
func (a *Agent) recordGroups() {
	if err := a.saveGroups(); err != nil {
		a.log.Error("save state", "err", err)
	}
}

// saveGroups saves the state with the running process groups and the
// members of those being stopped.
func (a *Agent) saveGroups() error {
	a.stateMu.Lock()
	defer a.stateMu.Unlock()
	a.st.Groups = a.groups()
	a.st.Members = a.sup.Members()
	return a.saveLocked(a.st)
}

// groups are the running process groups: the supervised processes' and
// the deploys' commands'.
func (a *Agent) groups() map[string]procgroup.Identity {
	out := a.sup.Groups()
	maps.Copy(out, a.jobs.Groups())
	return out
}

// saveLocked writes st (a.st or its successor) with the agent's identity;
// stateMu is held.
func (a *Agent) saveLocked(st *state.State) error {
	self, err := procgroup.Lookup(os.Getpid())
	if err == nil {
		st.Agent = &self
	}
	return state.Save(a.cfg.StatePath(), st)
}

// Shutdown stops everything in order within the configured timeout: the
// slots (drain in-flight requests, then stop their apps), the admin panel and
// control socket, then PostgreSQL (fast shutdown) and the Coder agent; it
// saves the state last.
func (a *Agent) Shutdown() error {
	total := a.cfg.ShutdownTimeout
	deadline := time.Now().Add(total)
	reserve := total / 4 // kept for the Coder agent and the final save
	// Running deploys are canceled: candidates stop, a cutover under way
	// ends its drain. Every later wait takes what is left of the budget,
	// and the slots' Stop cuts short the stop of an app draining meanwhile.
	a.follower.Close()
	a.deployer.Close(total / 4)
	drainCtx, cancel := context.WithTimeout(context.Background(), min(total/4, until(deadline, 2*reserve)))
	defer cancel()
	var wg sync.WaitGroup
	for _, s := range a.slots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = s.Shutdown(drainCtx)
			s.Stop(until(deadline, reserve))
		}()
	}
	wg.Wait()
	serversCtx, cancelServers := context.WithTimeout(context.Background(), time.Second)
	defer cancelServers()
	_ = a.admin.Shutdown(serversCtx)
	_ = a.control.Shutdown(serversCtx)
	a.pg.Close()
	a.sup.Close(until(deadline, 500*time.Millisecond)) // PostgreSQL and the Coder agent
	close(a.quit)
	<-a.saverDone
	if err := a.hist.Sync(); err != nil {
		a.log.Warn("history not written", "err", err)
	}
	a.stateMu.Lock()
	a.st.Groups, a.st.Members = nil, nil
	err := a.saveLocked(a.st)
	a.stateMu.Unlock()
	a.lock.Close()
	return err
}

// until is the time left before deadline less reserve, at least 100 ms.
func until(deadline time.Time, reserve time.Duration) time.Duration {
	return max(time.Until(deadline)-reserve, 100*time.Millisecond)
}

// closeEarly releases what a failed Start had acquired.
func (a *Agent) closeEarly() {
	for _, s := range a.slots {
		_ = s.Shutdown(context.Background())
	}
	for _, ln := range []net.Listener{a.adminLn, a.controlLn} {
		if ln != nil {
			_ = ln.Close()
		}
	}
	if a.follower != nil {
		a.follower.Close()
	}
	if a.deployer != nil {
		a.deployer.Close(time.Second)
	}
	if a.pg != nil {
		a.pg.Close()
	}
	if a.sup != nil {
		a.sup.Close(time.Second)
	}
	if a.quit != nil {
		close(a.quit)
		<-a.saverDone
	}
	if a.lock != nil {
		a.lock.Close()
	}
}
