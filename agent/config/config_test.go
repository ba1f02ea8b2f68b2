package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// clearEnv blanks every variable Load reads, so the host's environment
// cannot leak into a test (viper ignores empty variables).
func clearEnv(t *testing.T) {
	t.Helper()
	for _, k := range Keys() {
		t.Setenv(k.Env, "")
	}
}

// newFlags builds the flags the way cli.go does for `slotagent run`: the
// persistent --data-dir plus run's --bind and --admin-port, then parses args.
func newFlags(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	persistent := pflag.NewFlagSet("slotagent", pflag.ContinueOnError)
	persistent.String("data-dir", "", "data directory")
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	fs.String("bind", "", "address to listen on")
	fs.Int("admin-port", 0, "admin panel port")
	fs.String("config", "", "config file")
	fs.AddFlagSet(persistent)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse flags %q: %v", args, err)
	}
	return fs
}

// dataFlags returns flags with --data-dir in a fresh temp dir plus args.
func dataFlags(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	return newFlags(t, append([]string{"--data-dir", filepath.Join(t.TempDir(), "data")}, args...)...)
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustLoad(t *testing.T, fs *pflag.FlagSet, file string) *Config {
	t.Helper()
	c, err := Load(fs, file)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c == nil {
		t.Fatal("Load returned nil config and nil error")
	}
	return c
}

func TestDefaults(t *testing.T) {
	clearEnv(t)
	dir := filepath.Join(t.TempDir(), "nested", "data")
	c := mustLoad(t, newFlags(t, "--data-dir", dir), "")

	if c.DataDir != dir {
		t.Errorf("DataDir = %q, want %q", c.DataDir, dir)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Errorf("data dir not created: %v", err)
	} else if fi.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode = %v, want 0700", fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("write check left files behind: %v", entries)
	}
	if c.Bind != "127.0.0.1" {
		t.Errorf("Bind = %q, want 127.0.0.1", c.Bind)
	}
	if c.AdminPort != 9000 {
		t.Errorf("AdminPort = %d, want 9000", c.AdminPort)
	}
	if c.AdminURL != "" || c.CoderAgentInitScript != "" {
		t.Errorf("AdminURL = %q, CoderAgentInitScript = %q, want empty", c.AdminURL, c.CoderAgentInitScript)
	}
	if len(c.Slots) != len(SlotNames) {
		t.Fatalf("got %d slots, want %d", len(c.Slots), len(SlotNames))
	}
	for i, s := range c.Slots {
		if s.Name != SlotNames[i] || s.Port != 3001+i || s.URL != "" {
			t.Errorf("slot %d = %+v, want {%s %d \"\"}", i, s, SlotNames[i], 3001+i)
		}
		if got, ok := c.Slot(s.Name); !ok || got != s {
			t.Errorf("Slot(%q) = %+v, %v", s.Name, got, ok)
		}
	}
	if _, ok := c.Slot("f"); ok {
		t.Error(`Slot("f") found`)
	}
	if c.IdleTimeout != 75*time.Second || c.AdminAllowedHosts != nil || c.MaxConnsPerSlot != 1024 {
		t.Errorf("IdleTimeout = %v, AdminAllowedHosts = %q, MaxConnsPerSlot = %d, want 75s, none, 1024", c.IdleTimeout, c.AdminAllowedHosts, c.MaxConnsPerSlot)
	}
	if c.Policy.KillTimeout != 10*time.Second {
		t.Errorf("KillTimeout = %v, want 10s", c.Policy.KillTimeout)
	}
	if c.Policy.MinUptime != time.Second {
		t.Errorf("MinUptime = %v, want 1s", c.Policy.MinUptime)
	}
	if c.Policy.MaxRestarts != 16 {
		t.Errorf("MaxRestarts = %d, want 16", c.Policy.MaxRestarts)
	}
	if c.Policy.MaxMemory != 0 {
		t.Errorf("MaxMemory = %d, want 0", c.Policy.MaxMemory)
	}
	if !c.Policy.Autorestart {
		t.Error("Autorestart is off")
	}
	if c.ShutdownTimeout != 8*time.Second {
		t.Errorf("ShutdownTimeout = %v, want 8s", c.ShutdownTimeout)
	}
	if c.LogMaxSizeMB != 10 || c.LogMaxBackups != 5 {
		t.Errorf("log rotation = %d MB x %d, want 10 x 5", c.LogMaxSizeMB, c.LogMaxBackups)
	}
	if c.SocketPath() != filepath.Join(dir, "slotagent.sock") ||
		c.StatePath() != filepath.Join(dir, "state.json") ||
		c.LogDir() != filepath.Join(dir, "logs") {
		t.Errorf("paths: %s %s %s", c.SocketPath(), c.StatePath(), c.LogDir())
	}
}

func TestNilFlags(t *testing.T) {
	clearEnv(t)
	dir := filepath.Join(t.TempDir(), "data")
	t.Setenv("SLOTAGENT_DATA_DIR", dir)
	c := mustLoad(t, nil, "")
	if c.DataDir != dir || c.AdminPort != 9000 {
		t.Errorf("DataDir = %q, AdminPort = %d", c.DataDir, c.AdminPort)
	}
}

func TestPrecedence(t *testing.T) {
	file := "admin_port: 9300\nbind: 127.0.0.3\nslots:\n  c:\n    port: 4003\n"
	tests := []struct {
		name      string
		file      string
		env       map[string]string
		args      []string
		wantAdmin int
		wantBind  string
		wantC     int
	}{
		{name: "defaults", wantAdmin: 9000, wantBind: "127.0.0.1", wantC: 3003},
		{name: "file alone", file: file, wantAdmin: 9300, wantBind: "127.0.0.3", wantC: 4003},
		{
			name: "env over file", file: file,
			env:       map[string]string{"ADMIN_PORT": "9100", "SLOTAGENT_BIND": "127.0.0.2", "SLOT_C_PORT": "5003"},
			wantAdmin: 9100, wantBind: "127.0.0.2", wantC: 5003,
		},
		{
			name:      "env alone, flag unset",
			env:       map[string]string{"ADMIN_PORT": "9100", "SLOTAGENT_BIND": "127.0.0.2"},
			wantAdmin: 9100, wantBind: "127.0.0.2", wantC: 3003,
		},
		{
			name:      "flag over env",
			env:       map[string]string{"ADMIN_PORT": "9100", "SLOTAGENT_BIND": "127.0.0.2"},
			args:      []string{"--admin-port=9200", "--bind", "127.0.0.4"},
			wantAdmin: 9200, wantBind: "127.0.0.4", wantC: 3003,
		},
		{
			name: "flag over env over file", file: file,
			env:       map[string]string{"ADMIN_PORT": "9100"},
			args:      []string{"--admin-port=9200"},
			wantAdmin: 9200, wantBind: "127.0.0.3", wantC: 4003,
		},
		{
			name: "unset flag does not override file", file: file,
			args:      []string{"--bind=0.0.0.0"},
			wantAdmin: 9300, wantBind: "0.0.0.0", wantC: 4003,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var path string
			if tt.file != "" {
				path = writeFile(t, "slotagent.yaml", tt.file)
			}
			c := mustLoad(t, dataFlags(t, tt.args...), path)
			if c.AdminPort != tt.wantAdmin {
				t.Errorf("AdminPort = %d, want %d", c.AdminPort, tt.wantAdmin)
			}
			if c.Bind != tt.wantBind {
				t.Errorf("Bind = %q, want %q", c.Bind, tt.wantBind)
			}
			if s, _ := c.Slot("c"); s.Port != tt.wantC {
				t.Errorf("slot c port = %d, want %d", s.Port, tt.wantC)
			}
		})
	}
}

func TestDataDirPrecedence(t *testing.T) {
	clearEnv(t)
	envDir := filepath.Join(t.TempDir(), "env")
	fileDir := filepath.Join(t.TempDir(), "file")
	flagDir := filepath.Join(t.TempDir(), "flag")
	file := writeFile(t, "c.yaml", "data_dir: "+fileDir+"\n")

	if c := mustLoad(t, newFlags(t), file); c.DataDir != fileDir {
		t.Errorf("file: DataDir = %q, want %q", c.DataDir, fileDir)
	}
	t.Setenv("SLOTAGENT_DATA_DIR", envDir)
	if c := mustLoad(t, newFlags(t), file); c.DataDir != envDir {
		t.Errorf("env: DataDir = %q, want %q", c.DataDir, envDir)
	}
	if c := mustLoad(t, newFlags(t, "--data-dir", flagDir), file); c.DataDir != flagDir {
		t.Errorf("flag: DataDir = %q, want %q", c.DataDir, flagDir)
	}
}

func TestEnvValuesComeThrough(t *testing.T) {
	clearEnv(t)
	script := "#!/bin/sh\nset -e\ncurl -fsSL https://coder.example/bin | sh\n"
	t.Setenv("SLOT_B_URL", "https://b--main--ws--me.coder.example")
	t.Setenv("ADMIN_URL", "http://admin.coder.example:9000/")
	t.Setenv("CODER_AGENT_INIT_SCRIPT", script)
	t.Setenv("SLOTAGENT_KILL_TIMEOUT", "3s")
	t.Setenv("SLOTAGENT_MIN_UPTIME", "500ms")
	t.Setenv("SLOTAGENT_MAX_RESTARTS", "0")
	t.Setenv("SLOTAGENT_SHUTDOWN_TIMEOUT", "9s")
	t.Setenv("SLOTAGENT_LOG_MAX_SIZE_MB", "20")
	t.Setenv("SLOTAGENT_LOG_MAX_BACKUPS", "0")
	t.Setenv("SLOTAGENT_BIND", "localhost")
	t.Setenv("SLOTAGENT_ADMIN_ALLOWED_HOSTS", " Panel.Example ,*.proxy.example, ,10.0.0.5:9000")
	t.Setenv("SLOTAGENT_IDLE_TIMEOUT", "5s")
	c := mustLoad(t, dataFlags(t), "")
	if strings.Join(c.AdminAllowedHosts, " ") != "panel.example *.proxy.example 10.0.0.5:9000" || c.IdleTimeout != 5*time.Second {
		t.Errorf("AdminAllowedHosts = %q, IdleTimeout = %v", c.AdminAllowedHosts, c.IdleTimeout)
	}

	if s, _ := c.Slot("b"); s.URL != "https://b--main--ws--me.coder.example" {
		t.Errorf("slot b URL = %q", s.URL)
	}
	if s, _ := c.Slot("a"); s.URL != "" {
		t.Errorf("slot a URL = %q, want empty", s.URL)
	}
	if c.AdminURL != "http://admin.coder.example:9000/" {
		t.Errorf("AdminURL = %q", c.AdminURL)
	}
	// Surrounding space is trimmed; the script body is kept.
	if c.CoderAgentInitScript != strings.TrimSpace(script) {
		t.Errorf("CoderAgentInitScript = %q", c.CoderAgentInitScript)
	}
	if c.Policy.KillTimeout != 3*time.Second || c.Policy.MinUptime != 500*time.Millisecond || c.Policy.MaxRestarts != 0 {
		t.Errorf("Policy = %+v", c.Policy)
	}
	if c.ShutdownTimeout != 9*time.Second || c.LogMaxSizeMB != 20 || c.LogMaxBackups != 0 {
		t.Errorf("shutdown %v, log %d x %d", c.ShutdownTimeout, c.LogMaxSizeMB, c.LogMaxBackups)
	}
	if c.Bind != "localhost" {
		t.Errorf("Bind = %q", c.Bind)
	}
}

func TestMaxMemoryRestart(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
	}{
		{"512M", 512 << 20},
		{"1G", 1 << 30},
		{"200K", 200 << 10},
		{"1024", 1024},
		{"0", 0},
		{"512m", 512 << 20},
		{" 2g ", 2 << 30},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			clearEnv(t)
			t.Setenv("SLOTAGENT_MAX_MEMORY_RESTART", tt.in)
			c := mustLoad(t, dataFlags(t), "")
			if c.Policy.MaxMemory != tt.want {
				t.Errorf("MaxMemory = %d, want %d", c.Policy.MaxMemory, tt.want)
			}
		})
	}
	t.Run("from file", func(t *testing.T) {
		clearEnv(t)
		c := mustLoad(t, dataFlags(t), writeFile(t, "c.yaml", "max_memory_restart: 1G\n"))
		if c.Policy.MaxMemory != 1<<30 {
			t.Errorf("MaxMemory = %d", c.Policy.MaxMemory)
		}
	})
}

// checkErr asserts that err is one line mentioning every string in want.
func checkErr(t *testing.T, c *Config, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Load succeeded (%+v), want an error mentioning %q", c, want)
	}
	if c != nil {
		t.Errorf("Load returned a config with the error %v", err)
	}
	msg := err.Error()
	if strings.ContainsAny(msg, "\r\n") {
		t.Errorf("error has more than one line: %q", msg)
	}
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("error %q does not mention %q", msg, w)
		}
	}
}

func TestBadValues(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want []string
	}{
		{name: "admin port 0", env: map[string]string{"ADMIN_PORT": "0"}, want: []string{"admin_port", "ADMIN_PORT", "0"}},
		{name: "health timeout 0", env: map[string]string{"SLOTAGENT_HEALTH_TIMEOUT": "0s"}, want: []string{"health_timeout", "SLOTAGENT_HEALTH_TIMEOUT", "longer than 0"}},
		{name: "health attempts 0", env: map[string]string{"SLOTAGENT_HEALTH_ATTEMPTS": "0"}, want: []string{"health_attempts", "SLOTAGENT_HEALTH_ATTEMPTS"}},
		{name: "keep releases 0", env: map[string]string{"SLOTAGENT_KEEP_RELEASES": "0"}, want: []string{"keep_releases", "SLOTAGENT_KEEP_RELEASES"}},
		{name: "admin port 70000", env: map[string]string{"ADMIN_PORT": "70000"}, want: []string{"admin_port", "ADMIN_PORT", "70000"}},
		{name: "admin port abc", env: map[string]string{"ADMIN_PORT": "abc"}, want: []string{"admin_port", "ADMIN_PORT", `"abc"`}},
		{name: "admin port negative", env: map[string]string{"ADMIN_PORT": "-1"}, want: []string{"admin_port", "ADMIN_PORT"}},
		{name: "admin port flag 0", args: []string{"--admin-port=0"}, want: []string{"admin_port", "ADMIN_PORT"}},
		{name: "admin port flag 70000", args: []string{"--admin-port=70000"}, want: []string{"admin_port", "ADMIN_PORT", "70000"}},
		{name: "slot c port 0", env: map[string]string{"SLOT_C_PORT": "0"}, want: []string{"slots.c.port", "SLOT_C_PORT"}},
		{name: "slot c port 70000", env: map[string]string{"SLOT_C_PORT": "70000"}, want: []string{"slots.c.port", "SLOT_C_PORT", "70000"}},
		{name: "slot c port abc", env: map[string]string{"SLOT_C_PORT": "abc"}, want: []string{"slots.c.port", "SLOT_C_PORT", `"abc"`}},
		{name: "two slots on one port", env: map[string]string{"SLOT_B_PORT": "3001"}, want: []string{"slots.b.port", "SLOT_B_PORT", "slots.a.port", "SLOT_A_PORT", "3001"}},
		{name: "slot on admin port", env: map[string]string{"SLOT_D_PORT": "9000"}, want: []string{"slots.d.port", "SLOT_D_PORT", "admin_port", "ADMIN_PORT", "9000"}},
		{name: "admin port moved onto a slot", args: []string{"--admin-port=3005"}, want: []string{"slots.e.port", "SLOT_E_PORT", "admin_port", "ADMIN_PORT", "3005"}},
		{name: "bind not an ip", env: map[string]string{"SLOTAGENT_BIND": "not-an-ip"}, want: []string{"bind", "SLOTAGENT_BIND", "not-an-ip"}},
		{name: "bind flag not an ip", args: []string{"--bind=example.com"}, want: []string{"bind", "SLOTAGENT_BIND", "example.com"}},
		{name: "kill timeout without unit", env: map[string]string{"SLOTAGENT_KILL_TIMEOUT": "10"}, want: []string{"kill_timeout", "SLOTAGENT_KILL_TIMEOUT", `"10"`}},
		{name: "min uptime negative", env: map[string]string{"SLOTAGENT_MIN_UPTIME": "-1s"}, want: []string{"min_uptime", "SLOTAGENT_MIN_UPTIME"}},
		{name: "shutdown too short", env: map[string]string{"SLOTAGENT_SHUTDOWN_TIMEOUT": "100ms"}, want: []string{"shutdown_timeout", "SLOTAGENT_SHUTDOWN_TIMEOUT"}},
		{name: "max restarts negative", env: map[string]string{"SLOTAGENT_MAX_RESTARTS": "-3"}, want: []string{"max_restarts", "SLOTAGENT_MAX_RESTARTS"}},
		{name: "max restarts word", env: map[string]string{"SLOTAGENT_MAX_RESTARTS": "many"}, want: []string{"max_restarts", "SLOTAGENT_MAX_RESTARTS", `"many"`}},
		{name: "max memory lots", env: map[string]string{"SLOTAGENT_MAX_MEMORY_RESTART": "lots"}, want: []string{"max_memory_restart", "SLOTAGENT_MAX_MEMORY_RESTART", `"lots"`}},
		{name: "max memory suffix only", env: map[string]string{"SLOTAGENT_MAX_MEMORY_RESTART": "M"}, want: []string{"max_memory_restart", "SLOTAGENT_MAX_MEMORY_RESTART"}},
		{name: "max memory negative", env: map[string]string{"SLOTAGENT_MAX_MEMORY_RESTART": "-1G"}, want: []string{"max_memory_restart", "SLOTAGENT_MAX_MEMORY_RESTART"}},
		{name: "max memory overflows", env: map[string]string{"SLOTAGENT_MAX_MEMORY_RESTART": "20000000000G"}, want: []string{"max_memory_restart", "SLOTAGENT_MAX_MEMORY_RESTART"}},
		{name: "admin url ftp", env: map[string]string{"ADMIN_URL": "ftp://x"}, want: []string{"admin_url", "ADMIN_URL", "ftp://x"}},
		{name: "slot url ftp", env: map[string]string{"SLOT_E_URL": "ftp://x"}, want: []string{"slots.e.url", "SLOT_E_URL", "ftp://x"}},
		{name: "log size negative", env: map[string]string{"SLOTAGENT_LOG_MAX_SIZE_MB": "-1"}, want: []string{"log_max_size_mb", "SLOTAGENT_LOG_MAX_SIZE_MB"}},
		{name: "allowed host with a scheme", env: map[string]string{"SLOTAGENT_ADMIN_ALLOWED_HOSTS": "ok.example, https://panel.example"}, want: []string{"admin_allowed_hosts", "SLOTAGENT_ADMIN_ALLOWED_HOSTS", "https://panel.example"}},
		{name: "allowed host with a space", env: map[string]string{"SLOTAGENT_ADMIN_ALLOWED_HOSTS": "a b"}, want: []string{"admin_allowed_hosts", "SLOTAGENT_ADMIN_ALLOWED_HOSTS", `"a b"`}},
		{name: "max conns 0", env: map[string]string{"SLOTAGENT_MAX_CONNS_PER_SLOT": "0"}, want: []string{"max_conns_per_slot", "SLOTAGENT_MAX_CONNS_PER_SLOT"}},
		{name: "idle timeout 0", env: map[string]string{"SLOTAGENT_IDLE_TIMEOUT": "0s"}, want: []string{"idle_timeout", "SLOTAGENT_IDLE_TIMEOUT"}},
		{name: "value with newline", env: map[string]string{"ADMIN_PORT": "90\n00"}, want: []string{"admin_port", "ADMIN_PORT"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			c, err := Load(dataFlags(t, tt.args...), "")
			checkErr(t, c, err, tt.want...)
		})
	}
}

func TestBadDataDir(t *testing.T) {
	clearEnv(t)
	regular := writeFile(t, "not-a-dir", "x")
	tests := []struct {
		name string
		dir  string
	}{
		{"under a regular file", filepath.Join(regular, "data")},
		{"a regular file", regular},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(newFlags(t, "--data-dir", tt.dir), "")
			checkErr(t, c, err, "data_dir", "SLOTAGENT_DATA_DIR", tt.dir)
		})
	}
	t.Run("from env", func(t *testing.T) {
		t.Setenv("SLOTAGENT_DATA_DIR", filepath.Join(regular, "env"))
		c, err := Load(newFlags(t), "")
		checkErr(t, c, err, "data_dir", "SLOTAGENT_DATA_DIR", filepath.Join(regular, "env"))
	})
	t.Run("empty in file", func(t *testing.T) {
		c, err := Load(newFlags(t), writeFile(t, "c.yaml", "data_dir: ''\n"))
		checkErr(t, c, err, "data_dir", "SLOTAGENT_DATA_DIR")
	})
}

func TestBadConfigFile(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    []string
	}{
		{name: "typo", content: "admin_prot: 1\n", want: []string{"admin_prot", "unknown"}},
		{name: "unknown slot", content: "slots:\n  f:\n    port: 3006\n", want: []string{"slots.f.port", "unknown"}},
		{name: "unknown slot key", content: "slots:\n  a:\n    prot: 3006\n", want: []string{"slots.a.prot", "unknown"}},
		{name: "malformed", content: "admin_port: [9000\nbind: :\n", want: nil},
		{name: "bad indentation", content: "admin_port: 9000\n  bind: 127.0.0.1\n", want: nil},
		{name: "top-level list", content: "- admin_port\n- bind\n", want: nil},
		{name: "top-level scalar", content: "9000\n", want: nil},
		{name: "bad value names key", content: "admin_port: 70000\n", want: []string{"admin_port", "ADMIN_PORT", "70000"}},
		{name: "duration without unit", content: "kill_timeout: 10\n", want: []string{"kill_timeout", "SLOTAGENT_KILL_TIMEOUT"}},
		{name: "two slots on one port", content: "slots:\n  a:\n    port: 3005\n", want: []string{"slots.e.port", "slots.a.port", "3005"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			file := writeFile(t, "slotagent.yaml", tt.content)
			c, err := Load(dataFlags(t), file)
			want := tt.want
			if want == nil || strings.Contains(tt.name, "unknown") || tt.name == "typo" {
				want = append(want, file)
			}
			checkErr(t, c, err, want...)
		})
	}
	t.Run("missing", func(t *testing.T) {
		clearEnv(t)
		file := filepath.Join(t.TempDir(), "missing.yaml")
		c, err := Load(dataFlags(t), file)
		checkErr(t, c, err, file)
	})
	t.Run("unsupported extension", func(t *testing.T) {
		clearEnv(t)
		file := writeFile(t, "slotagent.conf", "admin_port = 1\n")
		c, err := Load(dataFlags(t), file)
		checkErr(t, c, err, file)
	})
}

func TestOtherFormats(t *testing.T) {
	tests := []struct{ name, content string }{
		{"c.json", `{"admin_port": 9400, "slots": {"a": {"port": 4001}}}`},
		{"c.toml", "admin_port = 9400\n[slots.a]\nport = 4001\n"},
		{"c.yml", "admin_port: 9400\nslots: {a: {port: 4001}}\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clearEnv(t)
			c := mustLoad(t, dataFlags(t), writeFile(t, tt.name, tt.content))
			if s, _ := c.Slot("a"); c.AdminPort != 9400 || s.Port != 4001 {
				t.Errorf("AdminPort = %d, slot a = %d", c.AdminPort, s.Port)
			}
		})
	}
}

func TestKeysAndDescribe(t *testing.T) {
	seenName, seenEnv := map[string]bool{}, map[string]bool{}
	for _, k := range Keys() {
		if seenName[k.Name] || seenEnv[k.Env] {
			t.Errorf("duplicate key %+v", k)
		}
		seenName[k.Name], seenEnv[k.Env] = true, true
		if k.Help == "" {
			t.Errorf("key %s has no help", k.Name)
		}
	}
	// The names DESIGN.md fixes.
	for _, env := range []string{"ADMIN_URL", "ADMIN_PORT", "SLOTAGENT_BIND", "SLOTAGENT_DATA_DIR", "CODER_AGENT_INIT_SCRIPT",
		"SLOT_A_PORT", "SLOT_E_PORT", "SLOT_A_URL", "SLOT_E_URL"} {
		if !seenEnv[env] {
			t.Errorf("no key reads %s", env)
		}
	}
	for name, want := range map[string]string{
		"slots.a.port": "slots.a.port (SLOT_A_PORT)",
		"admin_port":   "admin_port (ADMIN_PORT)",
		"nope":         "nope",
	} {
		if got := Describe(name); got != want {
			t.Errorf("Describe(%q) = %q, want %q", name, got, want)
		}
	}
	for _, flag := range []string{"data-dir", "bind", "admin-port"} {
		if !seenName[flagKeys[flag]] {
			t.Errorf("flag --%s is bound to unknown key %q", flag, flagKeys[flag])
		}
	}
	if !ValidSlot("a") || !ValidSlot("e") || ValidSlot("f") || ValidSlot("") {
		t.Error("ValidSlot")
	}
}

func TestMissingFileErrorUnwraps(t *testing.T) {
	clearEnv(t)
	_, err := Load(dataFlags(t), filepath.Join(t.TempDir(), "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %v does not wrap fs.ErrNotExist", err)
	}
}
