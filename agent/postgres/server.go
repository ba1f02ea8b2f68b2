// Package postgres runs the workspace PostgreSQL: it finds the server's
// binaries, makes the cluster on first boot (initdb, a generated superuser
// password), runs the server as a supervised process, waits until it takes
// connections, and keeps one role and one database per slot, plus the
// workspace user's workspace_db, each with its own generated password. It
// talks to the server with psql, started through the reaper.
//
// Its directory, <data-dir>/postgres, holds:
//
//	data/              the cluster (PGDATA) and its unix socket, owned by the server's user
//	credentials.json   the generated passwords and the port, mode 0600
//	workspace_db.url   the workspace database's URL, mode 0600
package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/coder-slots/coder-slots/agent/config"
	"github.com/coder-slots/coder-slots/agent/internal/atomicfile"
	"github.com/coder-slots/coder-slots/agent/supervisor"
)

// ProcessName is the supervised server's name (and its log files').
const ProcessName = "postgres"

// ReadyTimeout bounds how long the apps that use the workspace database
// wait for it at the agent's start; past it they start anyway.
const ReadyTimeout = 30 * time.Second

// Options configure the server.
type Options struct {
	// Settings are postgres.enabled, postgres.bin_dir and postgres.port.
	Settings config.Postgres
	// Dir is the server's directory, <data-dir>/postgres.
	Dir string
	// Slots get a role and a database each.
	Slots []string
}

// Dir is the server's directory in the agent's data dir.
func Dir(dataDir string) string { return filepath.Join(dataDir, "postgres") }

// Server is the workspace PostgreSQL as the agent runs it.
type Server struct {
	opt   Options
	log   *slog.Logger
	bins  Binaries // Dir and Psql; the version is major
	creds *Credentials
	// saved are the credentials as New found them on disk: inspect tells
	// a cluster the agent made by them, before the set-up saves creds.
	saved *Credentials

	off     string // why the server does not run by choice or for lack of binaries
	problem string // why it cannot run, found before Start

	mu       sync.Mutex
	major    int
	proc     *supervisor.Process
	phase    string // what the set-up is doing, until it ends
	failure  string // why the set-up failed
	setUpEnd bool   // the set-up ended, well or not

	cred   *syscall.Credential // the server's user when the agent is root; set up by Start
	done   chan struct{}       // closed when the set-up ends
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New finds the binaries and loads (on first boot: makes) the credentials,
// so that SlotEnv works at once. It only looks at files and runs nothing:
// initdb and the server are Start's, in the background. It never fails: a
// server that cannot run is off (postgres.enabled is false, or auto and no
// binaries) or has a problem (Problem), and the agent goes on without it.
func New(opt Options, log *slog.Logger) *Server {
	s := &Server{opt: opt, log: log, done: make(chan struct{})}
	if opt.Settings.Enabled == config.PostgresOff {
		s.off = "PostgreSQL is switched off (" + config.Describe("postgres.enabled") + " is false)"
		return s
	}
	var err error
	if s.bins, err = LocateBinaries(opt.Settings.BinDir); err != nil {
		if opt.Settings.Enabled == config.PostgresAuto {
			s.off = err.Error() + ": apps get no DATABASE_URL (" + config.Describe("postgres.bin_dir") + ")"
		} else {
			s.problem = err.Error() + " (" + config.Describe("postgres.enabled") + " is true)"
		}
		return s
	}
	if err := s.loadCredentials(); err != nil {
		s.problem = "PostgreSQL: " + err.Error()
	}
	return s
}

// loadCredentials reads the credentials and, in memory, gives every role a
// password and records the port; the set-up saves them once it knows the
// data dir is the agent's.
func (s *Server) loadCredentials() error {
	var err error
	if s.saved, err = loadCredentials(s.opt.Dir); err != nil {
		return err
	}
	s.creds = &Credentials{SystemID: s.saved.SystemID, Port: s.opt.Settings.Port, Passwords: maps.Clone(s.saved.Passwords)}
	roles := []string{Superuser}
	for _, db := range s.databases() {
		roles = append(roles, db.role)
	}
	s.creds.ensure(roles...)
	return nil
}

// Start sets the server up in the background and returns at once: it asks
// the binaries for their version, checks the data dir, makes the cluster
// on first boot, starts the server under sup, waits until it takes
// connections and makes every role and database. WaitReady waits for the
// end of that, Status shows how far it got. A server that cannot run is
// left alone.
func (s *Server) Start(sup *supervisor.Supervisor) {
	if !s.usable() {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(s.done)
		err := s.setUp(ctx, sup)
		s.mu.Lock()
		s.setUpEnd, s.phase = true, ""
		if err != nil {
			s.failure = err.Error()
		}
		s.mu.Unlock()
		if err != nil && ctx.Err() == nil {
			s.log.Error("PostgreSQL could not be started", "err", err)
		}
	}()
}

// WaitReady waits until the server takes connections and every database
// exists, at most timeout; it says why not when the set-up failed, timed
// out or was stopped.
func (s *Server) WaitReady(ctx context.Context, timeout time.Duration) error {
	if !s.usable() {
		return errors.New(s.off + s.problem)
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-s.done:
	case <-timer.C:
		return fmt.Errorf("PostgreSQL did not take connections within %s", timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failure != "" {
		return errors.New("PostgreSQL could not be started: " + s.failure)
	}
	return nil
}

// setUp is Start's work.
func (s *Server) setUp(ctx context.Context, sup *supervisor.Supervisor) error {
	s.setPhase("checking the binaries and the data dir")
	if err := s.prepare(ctx); err != nil {
		return err
	}
	s.setPhase("starting the server")
	if err := s.start(sup); err != nil {
		return err
	}
	s.setPhase("waiting for the server to take connections")
	if err := s.waitReady(ctx); err != nil {
		return err
	}
	s.setPhase("creating the roles and databases")
	return s.ensureDatabases(ctx)
}

func (s *Server) setPhase(phase string) {
	s.mu.Lock()
	s.phase = phase
	s.mu.Unlock()
}

// prepare asks the server for its version, checks the data dir, makes the
// cluster when there is none, and saves the workspace database's URL.
func (s *Server) prepare(ctx context.Context) error {
	major, err := serverMajor(ctx, s.bins.Postgres())
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.major = major
	s.mu.Unlock()
	if s.cred, err = serverUser(); err != nil {
		return err
	}
	if err := prepareDirs(s.opt.Dir, s.cred); err != nil {
		return err
	}
	fresh, err := inspect(s.dataDir(), s.saved, major, uid(s.cred))
	if err != nil {
		return err
	}
	s.creds.SystemID = s.saved.SystemID
	if err := s.creds.save(s.opt.Dir); err != nil {
		return err
	}
	if fresh {
		s.setPhase("creating the cluster (initdb)")
		if err := s.initdb(ctx, major); err != nil {
			return err
		}
	}
	url := s.creds.URL(WorkspaceRole, WorkspaceDatabase, false) + "\n"
	return atomicfile.Write(filepath.Join(s.opt.Dir, "workspace_db.url"), []byte(url), 0o600)
}

// initdb makes the cluster and records its identity with the credentials.
// It is made beside the data dir and renamed into place when complete, so
// that an agent stopped half-way leaves no half-made cluster behind.
func (s *Server) initdb(ctx context.Context, major int) error {
	start := time.Now()
	s.log.Info("first boot of PostgreSQL: creating the cluster", "data_dir", s.dataDir(), "version", major)
	tmp := s.dataDir() + ".initdb"
	if err := os.RemoveAll(tmp); err != nil {
		return fmt.Errorf("remove the unfinished cluster %s: %w", tmp, err)
	}
	if err := initdb(ctx, s.bins, tmp, s.creds.Passwords[Superuser], s.cred); err != nil {
		_ = os.RemoveAll(tmp)
		return err
	}
	if err := os.Rename(tmp, s.dataDir()); err != nil {
		return fmt.Errorf("move the new cluster into place: %w", err)
	}
	id, err := systemID(s.dataDir())
	if err != nil {
		return fmt.Errorf("the new cluster: %w", err)
	}
	s.creds.SystemID = id
	s.log.Info("PostgreSQL cluster created", "took", time.Since(start).Round(time.Millisecond))
	return s.creds.save(s.opt.Dir)
}

func (s *Server) dataDir() string { return filepath.Join(s.opt.Dir, "data") }

// databases are the slots' databases and the workspace database.
func (s *Server) databases() []database {
	out := make([]database, 0, len(s.opt.Slots)+1)
	for _, slot := range s.opt.Slots {
		out = append(out, database{slot: slot, role: SlotRole(slot), name: SlotRole(slot)})
	}
	return append(out, database{role: WorkspaceRole, name: WorkspaceDatabase})
}

// Off says why the server does not run by choice or for lack of binaries
// ("" when it is meant to run).
func (s *Server) Off() string { return s.off }

// Problem says why the server cannot run although it is meant to: no
// binaries with postgres.enabled true, credentials it cannot read, or what
// Start's set-up failed on, such as a data dir it must not touch ("" when
// there is none, or not yet).
func (s *Server) Problem() string {
	if s.problem != "" {
		return s.problem
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failure != "" {
		return "PostgreSQL: " + s.failure
	}
	return ""
}

// usable reports whether the server can be started.
func (s *Server) usable() bool { return s.off == "" && s.problem == "" }

// SlotEnv is the environment that connects a slot's apps to the slot's own
// database (DATABASE_URL, PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD),
// or nil when the server cannot run.
func (s *Server) SlotEnv(slot string) map[string]string {
	if !s.usable() {
		return nil
	}
	return s.creds.Env(SlotRole(slot), SlotRole(slot))
}

// start adds the server to sup and starts it.
func (s *Server) start(sup *supervisor.Supervisor) error {
	if removeStalePID(s.dataDir()) {
		s.log.Warn("removed the postmaster.pid of a server that is gone", "data_dir", s.dataDir())
	}
	addr := net.JoinHostPort(Host, strconv.Itoa(s.opt.Settings.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w (%s)", addr, err, config.Describe("postgres.port"))
	}
	ln.Close()
	proc, err := sup.Add(supervisor.Spec{
		Name:       ProcessName,
		Command:    s.argv(),
		Dir:        "/",
		Env:        serverEnv(),
		Secrets:    s.passwords(),
		Policy:     supervisor.DefaultPolicy(),
		Credential: s.cred,
		StopSignal: syscall.SIGINT, // fast shutdown: SIGTERM would wait for every client
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.proc = proc
	s.mu.Unlock()
	proc.Start()
	return nil
}

// maxSocketPath is the longest unix socket path Linux takes (sun_path).
const maxSocketPath = 107

// argv is the server's command line: TCP on 127.0.0.1 and, when its path
// fits, a unix socket in the data dir (never in /var/run/postgresql, which
// a container may not have).
func (s *Server) argv() []string {
	port := strconv.Itoa(s.opt.Settings.Port)
	socketDir := s.dataDir()
	if len(filepath.Join(socketDir, ".s.PGSQL."+port)) > maxSocketPath {
		socketDir = ""
	}
	argv := []string{s.bins.Postgres(), "-D", s.dataDir(), "-c", "listen_addresses=" + Host,
		"-c", "port=" + port, "-c", "unix_socket_directories=" + socketDir}
	if s.major >= 14 {
		// After a crash, sync the data dir with one syncfs, not an fsync
		// per file (seconds on a busy disk before recovery even starts).
		argv = append(argv, "-c", "recovery_init_sync_method=syncfs")
	}
	return argv
}

func (s *Server) passwords() []string {
	out := make([]string, 0, len(s.creds.Passwords))
	for _, pw := range s.creds.Passwords {
		out = append(out, pw)
	}
	return out
}

// ensureDatabases makes sure every role and database exists with its
// password.
func (s *Server) ensureDatabases(ctx context.Context) error {
	script := lockdownSQL
	for _, db := range s.databases() {
		verifier, err := scramVerifier(s.creds.Passwords[db.role])
		if err != nil {
			return err
		}
		script += ensureSQL(db, verifier)
	}
	if _, err := s.psql(ctx, script); err != nil {
		return fmt.Errorf("create the roles and databases: %w", err)
	}
	s.log.Info("PostgreSQL is ready", "port", s.opt.Settings.Port, "databases", len(s.databases()))
	return nil
}

// waitReady polls with a real connection until the server answers, the
// server errors (it will not come back by itself) or ctx ends.
func (s *Server) waitReady(ctx context.Context) error {
	for {
		_, err := s.psql(ctx, "SELECT 1;")
		if err == nil {
			return nil
		}
		if info := s.proc.Info(); info.Status == supervisor.Errored {
			return fmt.Errorf("the server is errored: %s", info.Reason)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// psql runs script as the superuser, at most 30 s.
func (s *Server) psql(ctx context.Context, script string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return psql(ctx, s.bins, s.opt.Settings.Port, s.creds.Passwords[Superuser], script)
}

// ProcessInfo is the supervised server's info for the process list:
// launching, with the set-up's step as its reason, until the roles and
// databases exist, so that online means usable.
func (s *Server) ProcessInfo(info supervisor.Info) supervisor.Info {
	s.mu.Lock()
	ended, phase := s.setUpEnd, s.phase
	s.mu.Unlock()
	if !ended && info.Status == supervisor.Online {
		info.Status, info.Reason = supervisor.Launching, phase
	}
	return info
}

// Close stops the set-up if it still runs; the supervisor stops the server.
func (s *Server) Close() {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
}

// The states of Status.
const (
	StateStarting = "starting" // being set up: initdb, the server's start, the databases
	StateOnline   = "online"   // takes connections
	StateDown     = "down"     // was set up, but does not answer now
	StateOff      = "off"      // not run: switched off, or no binaries
	StateError    = "error"    // cannot run until someone fixes what Detail says
)

// Status is the server and its databases, without secrets.
type Status struct {
	// State is StateStarting, StateOnline, StateDown, StateOff or StateError.
	State  string `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Host and Port are where the server listens (or is to listen).
	Host string `json:"host,omitempty"`
	Port int    `json:"port,omitempty"`
	// Version is the server's major version, once known.
	Version int    `json:"version,omitempty"`
	DataDir string `json:"data_dir,omitempty"`
	// Process is the supervised server.
	Process   *supervisor.Info `json:"process,omitempty"`
	Databases []Database       `json:"databases,omitempty"`
}

// Database is one database and its role.
type Database struct {
	Name string `json:"name"`
	// Slot is the slot it belongs to; empty for the workspace database.
	Slot string `json:"slot,omitempty"`
	User string `json:"user"`
	// URL is its connection URL, the password masked.
	URL string `json:"url"`
	// Up: the server answers and the database exists.
	Up bool `json:"up"`
	// Size in bytes, measured while the server is online.
	Size int64 `json:"size"`
}

// Status describes the server and measures its databases.
func (s *Server) Status(ctx context.Context) Status {
	if s.off != "" {
		return Status{State: StateOff, Detail: s.off}
	}
	st := Status{State: StateError, Detail: s.problem, Host: Host, Port: s.opt.Settings.Port}
	if s.problem != "" {
		return st
	}
	st.DataDir = s.dataDir()
	for _, db := range s.databases() {
		st.Databases = append(st.Databases, Database{Name: db.name, Slot: db.slot, User: db.role, URL: s.creds.URL(db.role, db.name, true)})
	}
	s.mu.Lock()
	proc, failure, phase, ended := s.proc, s.failure, s.phase, s.setUpEnd
	st.Version = s.major
	s.mu.Unlock()
	if proc != nil {
		info := proc.Info()
		st.Process = &info
	}
	switch {
	case failure != "":
		st.Detail = "PostgreSQL: " + failure
		return st
	case !ended:
		st.State, st.Detail = StateStarting, phase
		return st
	}
	st.State = StateDown
	if info := st.Process; info.Status != supervisor.Online {
		st.Detail = "the server is " + string(info.Status) + reasonOf(*info) + lastLog(proc)
		return st
	}
	out, err := s.psql(ctx, sizesSQL(s.databases()))
	if err != nil {
		st.Detail = err.Error()
		return st
	}
	sizes := parseSizes(out)
	st.State = StateOnline
	for i, db := range st.Databases {
		st.Databases[i].Size, st.Databases[i].Up = sizes[db.Name]
	}
	return st
}

func reasonOf(info supervisor.Info) string {
	if info.Reason == "" {
		return ""
	}
	return " (" + info.Reason + ")"
}

// lastLog is the server's last log lines, which say why it stopped.
func lastLog(proc *supervisor.Process) string {
	lines, err := proc.Logs().Tail(2)
	if err != nil || len(lines) == 0 {
		return ""
	}
	return "; its log ends: " + strings.Join(lines, " | ")
}

// Reset drops a slot's database, disconnecting its clients, and makes it
// anew, empty.
func (s *Server) Reset(ctx context.Context, slot string) error {
	if !s.usable() {
		return errors.New(s.off + s.problem)
	}
	db := database{slot: slot, role: SlotRole(slot), name: SlotRole(slot)}
	if _, err := s.psql(ctx, resetSQL(db)); err != nil {
		return fmt.Errorf("reset database %s: %w", db.name, err)
	}
	s.log.Info("database reset", "slot", slot, "database", db.name)
	return nil
}

// URL reads a database's connection URL, with its password, from the
// credentials in the server's directory dir: target is a slot or
// "workspace".
func URL(dir, target string) (string, error) {
	creds, err := loadCredentials(dir)
	if err != nil {
		return "", err
	}
	role, name := SlotRole(target), SlotRole(target)
	if target == "workspace" {
		role, name = WorkspaceRole, WorkspaceDatabase
	}
	if creds.Passwords[role] == "" {
		return "", fmt.Errorf("no credentials for database %s in %s: the agent has not set PostgreSQL up", name, dir)
	}
	return creds.URL(role, name, false), nil
}
