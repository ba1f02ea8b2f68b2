// Package config loads slotagent's settings from flags, environment, an
// optional config file and defaults (in that order of precedence) and
// validates them, naming the offending key in every error.
package config

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"golang.org/x/net/http/httpguts"

	"github.com/coder-slots/coder-slots/agent/supervisor"
)

// SlotNames are the slots every workspace has, in order.
var SlotNames = []string{"a", "b", "c", "d", "e"}

// Slot is one slot's settings.
type Slot struct {
	Name string
	Port int
	URL  string
}

// Config is slotagent's configuration.
type Config struct {
	// DataDir holds the state file, releases, logs and the control socket.
	DataDir string
	// Bind is the address every port listens on.
	Bind string
	// AdminPort is the admin panel's port.
	AdminPort int
	// AdminURL is where users reach the admin panel.
	AdminURL string
	// AdminAllowedHosts are Host names the admin port answers besides its
	// own (see admin.Hosts): "name", "name:port" or "*.domain".
	AdminAllowedHosts []string
	// IdleTimeout bounds the wait of a kept-alive client connection for
	// its next request, on the slot ports and the admin port.
	IdleTimeout time.Duration
	// MaxConnsPerSlot caps the client connections one slot port serves
	// at once.
	MaxConnsPerSlot int
	// Slots are a–e, in order.
	Slots []Slot
	// CoderAgentInitScript, when set, runs as the supervised coder-agent
	// (RoleEntrypoint only).
	CoderAgentInitScript string
	// Role is RoleEntrypoint or RoleService.
	Role string
	// Instance names the coder-slots module instance that started a
	// service (its script sets it); empty otherwise.
	Instance string
	// Policy is the restart policy of the slots' apps.
	Policy supervisor.Policy
	// ShutdownTimeout bounds an orderly shutdown (inside Docker's 10 s).
	ShutdownTimeout time.Duration
	// Deploy configures the deploy pipeline.
	Deploy Deploy
	// LogMaxSizeMB and LogMaxBackups configure log rotation.
	LogMaxSizeMB, LogMaxBackups int
	// Postgres configures the workspace PostgreSQL.
	Postgres Postgres
}

// Roles: how slotagent runs in a workspace. Both run the slots, the admin
// panel and PostgreSQL; both reap the orphans of their own process tree
// (as PID 1 every orphan of the container is theirs).
const (
	// RoleEntrypoint is the container's entrypoint (PID 1) of our
	// template: it also supervises the Coder agent.
	RoleEntrypoint = "entrypoint"
	// RoleService runs beside a Coder agent someone else runs, started by
	// the coder-slots module's script: it never runs a Coder agent.
	RoleService = "service"
	// RoleAuto is RoleEntrypoint as PID 1, RoleService otherwise.
	RoleAuto = "auto"
)

// The values of postgres.enabled.
const (
	PostgresAuto = "auto" // run it when the binaries are found
	PostgresOn   = "true" // run it; missing binaries are a problem
	PostgresOff  = "false"
)

// Postgres is the workspace PostgreSQL's settings.
type Postgres struct {
	// Enabled is PostgresAuto, PostgresOn or PostgresOff.
	Enabled string
	// BinDir holds postgres and initdb; empty means search for them.
	BinDir string
	// Port is the server's port on 127.0.0.1.
	Port int
}

// Deploy is the deploy pipeline's settings.
type Deploy struct {
	// HealthListenTimeout is how long a new release may take to listen on PORT.
	HealthListenTimeout time.Duration
	// HealthAttempts GET /health (then /) tries, HealthInterval apart, each
	// bounded by HealthTimeout.
	HealthAttempts                int
	HealthInterval, HealthTimeout time.Duration
	// DrainTimeout bounds how long the old release finishes its requests.
	DrainTimeout time.Duration
	// KeepReleases is how many releases per slot stay on disk.
	KeepReleases int
}

// SocketPath is the control socket the CLI talks to.
func (c *Config) SocketPath() string { return SocketPath(c.DataDir) }

// SocketPath is the control socket in dataDir.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, "slotagent.sock") }

// StatePath is the state file.
func (c *Config) StatePath() string { return filepath.Join(c.DataDir, "state.json") }

// HistoryDir is where the slots' history files go.
func (c *Config) HistoryDir() string { return filepath.Join(c.DataDir, "history") }

// LogDir is where process logs go.
func (c *Config) LogDir() string { return filepath.Join(c.DataDir, "logs") }

// Slot returns the settings of slot name.
func (c *Config) Slot(name string) (Slot, bool) {
	for _, s := range c.Slots {
		if s.Name == name {
			return s, true
		}
	}
	return Slot{}, false
}

// Key is one setting: its config-file key, its environment variable, its default and meaning.
type Key struct {
	Name, Env, Default, Help string
}

func slotKeys() []Key {
	var out []Key
	for i, n := range SlotNames {
		up := strings.ToUpper(n)
		out = append(out,
			Key{"slots." + n + ".port", "SLOT_" + up + "_PORT", strconv.Itoa(3001 + i), "public port of slot " + n},
			Key{"slots." + n + ".url", "SLOT_" + up + "_URL", "", "URL of slot " + n + " shown on its placeholder"},
		)
	}
	return out
}

// Keys lists every setting with its environment variable, default and
// meaning, for docs/configuration.md and `slotagent run --help`.
func Keys() []Key {
	home, _ := os.UserHomeDir()
	base := []Key{
		{"data_dir", "SLOTAGENT_DATA_DIR", filepath.Join(home, "data", "slotagent"), "state, releases, logs and the control socket"},
		{"bind", "SLOTAGENT_BIND", "127.0.0.1", "address every port listens on"},
		{"admin_port", "ADMIN_PORT", "9000", "admin panel port"},
		{"admin_url", "ADMIN_URL", "", "admin panel URL, linked from placeholders"},
		{"admin_allowed_hosts", "SLOTAGENT_ADMIN_ALLOWED_HOSTS", "", "more Host names the admin port answers, comma-separated: name, name:port, *.domain or *.domain:port (IP addresses, localhost and the host of admin_url always are)"},
		{"idle_timeout", "SLOTAGENT_IDLE_TIMEOUT", "75s", "how long a kept-alive client connection to a slot or the admin port may wait for its next request"},
		{"max_conns_per_slot", "SLOTAGENT_MAX_CONNS_PER_SLOT", "1024", "client connections one slot port serves at once; one more is closed at once (counted in /metrics)"},
		{"coder_agent_init_script", "CODER_AGENT_INIT_SCRIPT", "", "Coder agent init script, run with sh -c as process coder-agent (role entrypoint only)"},
		{"role", "SLOTAGENT_ROLE", RoleAuto, "entrypoint (the container's PID 1: also runs the Coder agent), service (beside a Coder agent, as the coder-slots module starts it) or auto (entrypoint as PID 1, else service)"},
		{"instance", "SLOTAGENT_INSTANCE", "", "the coder-slots module instance that started this service (set by its script)"},
		{"kill_timeout", "SLOTAGENT_KILL_TIMEOUT", "10s", "wait after SIGTERM before SIGKILL"},
		{"min_uptime", "SLOTAGENT_MIN_UPTIME", "1s", "an exit sooner than this after start is unstable"},
		{"max_restarts", "SLOTAGENT_MAX_RESTARTS", "16", "unstable restarts before errored"},
		{"max_memory_restart", "SLOTAGENT_MAX_MEMORY_RESTART", "0", "restart an app whose process tree passes this RSS (e.g. 512M, 1G; 0 = off)"},
		{"shutdown_timeout", "SLOTAGENT_SHUTDOWN_TIMEOUT", "8s", "bound on an orderly shutdown"},
		{"health_listen_timeout", "SLOTAGENT_HEALTH_LISTEN_TIMEOUT", "60s", "how long a new release may take to listen on PORT"},
		{"health_attempts", "SLOTAGENT_HEALTH_ATTEMPTS", "15", "GET /health (then /) tries before a deploy fails"},
		{"health_interval", "SLOTAGENT_HEALTH_INTERVAL", "1s", "wait between health tries"},
		{"health_timeout", "SLOTAGENT_HEALTH_TIMEOUT", "5s", "bound on one health request"},
		{"drain_timeout", "SLOTAGENT_DRAIN_TIMEOUT", "30s", "how long the old release may finish its requests after a cutover"},
		{"keep_releases", "SLOTAGENT_KEEP_RELEASES", "3", "releases per slot kept on disk for rollback"},
		{"log_max_size_mb", "SLOTAGENT_LOG_MAX_SIZE_MB", "10", "rotate a log file at this size"},
		{"log_max_backups", "SLOTAGENT_LOG_MAX_BACKUPS", "5", "rotated log files kept (gzip)"},
		{"postgres.enabled", "SLOTAGENT_POSTGRES_ENABLED", PostgresAuto, "run the workspace PostgreSQL: auto (when its binaries are found), true or false"},
		{"postgres.bin_dir", "SLOTAGENT_POSTGRES_BIN_DIR", "", "directory of postgres and initdb (empty: PATH, then /usr/lib/postgresql/<newest>/bin)"},
		{"postgres.port", "SLOTAGENT_POSTGRES_PORT", "5432", "PostgreSQL port on 127.0.0.1"},
	}
	return append(base, slotKeys()...)
}

// Flag names bound to keys.
var flagKeys = map[string]string{"data-dir": "data_dir", "bind": "bind", "admin-port": "admin_port"}

// Load reads the configuration: flags (only those set) override the
// environment, which overrides the config file (file, may be empty), which
// overrides the defaults. It validates and returns the first error.
func Load(flags *pflag.FlagSet, file string) (*Config, error) {
	v := viper.New()
	for _, k := range Keys() {
		v.SetDefault(k.Name, k.Default)
		if err := v.BindEnv(k.Name, k.Env); err != nil {
			return nil, fmt.Errorf("config: bind %s: %w", k.Env, err)
		}
	}
	if flags != nil {
		for flag, name := range flagKeys {
			if f := flags.Lookup(flag); f != nil {
				if err := v.BindPFlag(name, f); err != nil {
					return nil, fmt.Errorf("config: bind --%s: %w", flag, err)
				}
			}
		}
	}
	if file != "" {
		v.SetConfigFile(file)
		if err := v.ReadInConfig(); err != nil {
			// yaml.v3 reports type errors on several lines ("unmarshal
			// errors:\n  line 1: ..."); keep the message on one line.
			return nil, fmt.Errorf("config: read %s: %w", file, oneLineError{err})
		}
		if err := checkKnown(v, file); err != nil {
			return nil, err
		}
	}
	p := parser{v: v}
	c := &Config{
		DataDir:              p.str("data_dir"),
		Bind:                 p.str("bind"),
		AdminPort:            p.port("admin_port"),
		AdminURL:             p.url("admin_url"),
		AdminAllowedHosts:    p.hosts("admin_allowed_hosts"),
		IdleTimeout:          p.duration("idle_timeout"),
		MaxConnsPerSlot:      p.positive("max_conns_per_slot"),
		CoderAgentInitScript: p.str("coder_agent_init_script"),
		Role:                 p.role("role"),
		Instance:             p.str("instance"),
		ShutdownTimeout:      p.duration("shutdown_timeout"),
		Deploy: Deploy{
			HealthListenTimeout: p.duration("health_listen_timeout"),
			HealthAttempts:      p.positive("health_attempts"),
			HealthInterval:      p.duration("health_interval"),
			HealthTimeout:       p.duration("health_timeout"),
			DrainTimeout:        p.duration("drain_timeout"),
			KeepReleases:        p.positive("keep_releases"),
		},
		LogMaxSizeMB:  p.positive("log_max_size_mb"),
		LogMaxBackups: p.positive("log_max_backups"),
		Postgres: Postgres{
			Enabled: p.auto("postgres.enabled"),
			BinDir:  p.str("postgres.bin_dir"),
			Port:    p.port("postgres.port"),
		},
	}
	c.Policy = supervisor.DefaultPolicy()
	c.Policy.KillTimeout = p.duration("kill_timeout")
	c.Policy.MinUptime = p.duration("min_uptime")
	c.Policy.MaxRestarts = p.positive("max_restarts")
	c.Policy.MaxMemory = p.bytes("max_memory_restart")
	for _, n := range SlotNames {
		c.Slots = append(c.Slots, Slot{Name: n, Port: p.port("slots." + n + ".port"), URL: p.url("slots." + n + ".url")})
	}
	if p.err != nil {
		return nil, p.err
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	// Release folders are recorded by path: one spelling for the data dir.
	if abs, err := filepath.Abs(c.DataDir); err == nil {
		c.DataDir = abs
	}
	return c, nil
}

// checkKnown reports keys in the config file that slotagent does not know.
func checkKnown(v *viper.Viper, file string) error {
	known := map[string]bool{}
	for _, k := range Keys() {
		known[k.Name] = true
	}
	for _, k := range v.AllKeys() {
		if !known[k] {
			return fmt.Errorf("config: %s: unknown key %q", file, k)
		}
	}
	return nil
}

// Describe names a key with its environment variable, e.g. "slots.a.port (SLOT_A_PORT)".
func Describe(name string) string {
	for _, k := range Keys() {
		if k.Name == name {
			return name + " (" + k.Env + ")"
		}
	}
	return name
}

// parser reads typed values, keeping the first error.
type parser struct {
	v   *viper.Viper
	err error
}

func (p *parser) fail(name, format string, args ...any) {
	if p.err == nil {
		p.err = fmt.Errorf("config: %s: %s", Describe(name), fmt.Sprintf(format, args...))
	}
}

func (p *parser) str(name string) string { return strings.TrimSpace(p.v.GetString(name)) }

func (p *parser) int(name string) (int, bool) {
	s := p.str(name)
	n, err := strconv.Atoi(s)
	if err != nil {
		p.fail(name, "%q is not a whole number", s)
		return 0, false
	}
	return n, true
}

func (p *parser) port(name string) int {
	n, ok := p.int(name)
	if ok && (n < 1 || n > 65535) {
		p.fail(name, "port %d is out of range 1-65535", n)
	}
	return n
}

func (p *parser) positive(name string) int {
	n, ok := p.int(name)
	if ok && n < 0 {
		p.fail(name, "%d must not be negative", n)
	}
	return n
}

// role reads a role; auto becomes RoleEntrypoint when this process is
// PID 1, else RoleService.
func (p *parser) role(name string) string {
	switch s := strings.ToLower(p.str(name)); s {
	case RoleEntrypoint, RoleService:
		return s
	case RoleAuto:
		if os.Getpid() == 1 {
			return RoleEntrypoint
		}
		return RoleService
	default:
		p.fail(name, "%q is not %s, %s or %s", s, RoleEntrypoint, RoleService, RoleAuto)
		return ""
	}
}

// auto reads auto, or a boolean as PostgresOn or PostgresOff.
func (p *parser) auto(name string) string {
	s := strings.ToLower(p.str(name))
	if s == PostgresAuto {
		return s
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		p.fail(name, "%q is not auto, true or false", s)
	}
	if b {
		return PostgresOn
	}
	return PostgresOff
}

func (p *parser) duration(name string) time.Duration {
	s := p.str(name)
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		p.fail(name, "%q is not a duration like 10s or 500ms", s)
	}
	return d
}

func (p *parser) url(name string) string {
	s := p.str(name)
	if s == "" {
		return ""
	}
	if !strings.HasPrefix(s, "http://") && !strings.HasPrefix(s, "https://") {
		p.fail(name, "%q is not an http(s) URL", s)
	}
	return s
}

// hosts reads a comma-separated list of host names, each maybe with a
// port or a "*." prefix (no scheme, no path).
func (p *parser) hosts(name string) []string {
	var out []string
	for h := range strings.SplitSeq(p.str(name), ",") {
		h = strings.ToLower(strings.TrimSpace(h))
		if h == "" {
			continue
		}
		if strings.ContainsAny(h, "/@") || !httpguts.ValidHostHeader(strings.TrimPrefix(h, "*.")) {
			p.fail(name, "%q is not a host name (name, name:port, *.domain or *.domain:port, without a scheme)", h)
			return nil
		}
		out = append(out, h)
	}
	return out
}

// bytes parses sizes such as 512M, 1G, 200K or a plain number of bytes.
func (p *parser) bytes(name string) uint64 {
	s := strings.ToUpper(p.str(name))
	mult := uint64(1)
	for suffix, m := range map[string]uint64{"K": 1 << 10, "M": 1 << 20, "G": 1 << 30} {
		if strings.HasSuffix(s, suffix) {
			s, mult = strings.TrimSuffix(s, suffix), m
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		p.fail(name, "%q is not a size like 512M or 1G", p.str(name))
		return 0
	}
	if n > math.MaxUint64/mult {
		p.fail(name, "%q is too large", p.str(name))
		return 0
	}
	return n * mult
}

func (c *Config) validate() error {
	if net.ParseIP(c.Bind) == nil && c.Bind != "localhost" {
		return fmt.Errorf("config: %s: %q is not an IP address", Describe("bind"), c.Bind)
	}
	used := map[int]string{c.AdminPort: "admin_port"}
	for _, s := range c.Slots {
		name := "slots." + s.Name + ".port"
		if other, ok := used[s.Port]; ok {
			return fmt.Errorf("config: %s: port %d is already used by %s", Describe(name), s.Port, Describe(other))
		}
		used[s.Port] = name
	}
	if other, ok := used[c.Postgres.Port]; ok && c.Postgres.Enabled != PostgresOff {
		return fmt.Errorf("config: %s: port %d is already used by %s", Describe("postgres.port"), c.Postgres.Port, Describe(other))
	}
	if c.IdleTimeout <= 0 {
		return fmt.Errorf("config: %s: must be longer than 0", Describe("idle_timeout"))
	}
	if c.MaxConnsPerSlot < 1 {
		return fmt.Errorf("config: %s: at least 1", Describe("max_conns_per_slot"))
	}
	if c.Deploy.HealthTimeout <= 0 || c.Deploy.HealthListenTimeout <= 0 {
		return fmt.Errorf("config: %s and %s must be longer than 0", Describe("health_timeout"), Describe("health_listen_timeout"))
	}
	if c.Deploy.HealthAttempts < 1 {
		return fmt.Errorf("config: %s: at least 1", Describe("health_attempts"))
	}
	if c.Deploy.KeepReleases < 1 {
		return fmt.Errorf("config: %s: at least 1", Describe("keep_releases"))
	}
	if c.ShutdownTimeout < time.Second {
		return fmt.Errorf("config: %s: %s is too short (at least 1s)", Describe("shutdown_timeout"), c.ShutdownTimeout)
	}
	return checkWritable(c.DataDir)
}

// checkWritable makes sure dir exists (creating it 0700) and takes files.
func checkWritable(dir string) error {
	if dir == "" {
		return fmt.Errorf("config: %s: empty", Describe("data_dir"))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("config: %s: %s cannot be created: %w", Describe("data_dir"), dir, unwrapPath(err))
	}
	f, err := os.CreateTemp(dir, ".write-check-*")
	if err != nil {
		return fmt.Errorf("config: %s: %s is not writable: %w", Describe("data_dir"), dir, unwrapPath(err))
	}
	f.Close()
	return os.Remove(f.Name())
}

// oneLineError is err with its message folded onto one line.
type oneLineError struct{ err error }

func (e oneLineError) Error() string {
	lines := strings.Split(e.err.Error(), "\n")
	for i := range lines {
		lines[i] = strings.TrimSpace(lines[i])
	}
	return strings.Join(slices.DeleteFunc(lines, func(l string) bool { return l == "" }), " ")
}

func (e oneLineError) Unwrap() error { return e.err }

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// ValidSlot reports whether name is a slot.
func ValidSlot(name string) bool { return slices.Contains(SlotNames, name) }
