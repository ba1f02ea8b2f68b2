package bench

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder-slots/coder-slots/agent/config"
	"github.com/coder-slots/coder-slots/agent/internal/testkit"
	"github.com/coder-slots/coder-slots/agent/state"
)

// TestEcosystemExportRunsUnderPM2: `slotagent config --format ecosystem`
// is the real thing. Every export passes `node --check`; the revealed one,
// started with PM2 (installed from npm as make bench does, in its own
// PM2_HOME, on free ports once the agent is gone), serves the deployed
// app and every placeholder's /health; a slot whose release folder is gone
// is exported as its placeholder, with a comment saying so.
func TestEcosystemExportRunsUnderPM2(t *testing.T) {
	testkit.NeedNode(t)
	if _, err := exec.LookPath("npm"); err != nil {
		t.Skip("npm is not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	b := &bench{root: t.TempDir(), log: testWriter{t}}
	var err error
	if b.modDir, err = moduleDir(ctx); err != nil {
		t.Fatal(err)
	}
	if b.bin, err = buildAgent(ctx, b.modDir, b.root); err != nil {
		t.Fatal(err)
	}
	if b.pm2, err = ensurePM2(ctx, b.modDir); err != nil {
		t.Skipf("PM2 cannot be installed from npm here: %v", err)
	}

	a, err := b.newAgent()
	if err != nil {
		t.Fatal(err)
	}
	const secret = "tok-ecosystem-4711"
	if err := b.deployed(a, testkit.HelloApp, map[string]string{"API_TOKEN": secret, "VERSION": "v7"}, "a", "b"); err != nil {
		t.Fatal(err)
	}
	st, err := state.Load(filepath.Join(a.dataDir, "state.json"))
	if err != nil {
		t.Fatal(err)
	}
	gone := st.Slots["b"].Releases[0].Dir
	if err := os.RemoveAll(gone); err != nil {
		t.Fatal(err)
	}
	if err := a.startReady(); err != nil {
		t.Fatal(err)
	}
	defer b.stop(a)
	masked, err := a.cli(ctx, "config", "--format", "ecosystem")
	if err != nil {
		t.Fatal(err)
	}
	revealed, err := a.cli(ctx, "config", "--format", "ecosystem", "--reveal-env")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(masked, secret) || !strings.Contains(masked, `"API_TOKEN": "********"`) || !strings.Contains(revealed, `"API_TOKEN": "`+secret+`"`) {
		t.Errorf("masked export:\n%s\nrevealed export:\n%s", masked, revealed)
	}
	if !strings.Contains(masked, "// slot-b: the folder "+gone+" of release r1 is gone: exported as its placeholder") {
		t.Errorf("no note of slot b's missing release:\n%s", masked)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "ecosystem.config.js")
	for name, js := range map[string]string{"masked.js": masked, "ecosystem.config.js": revealed} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(js), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("node", "--check", path).CombinedOutput(); err != nil {
			t.Fatalf("node --check %s: %v\n%s\n%s", name, err, out, js)
		}
	}
	var apps struct {
		Apps []struct {
			Name      string            `json:"name"`
			Script    string            `json:"script"`
			Args      []string          `json:"args"`
			Cwd       string            `json:"cwd"`
			Env       map[string]string `json:"env"`
			Autostart *bool             `json:"autostart"`
		} `json:"apps"`
	}
	js := revealed[strings.Index(revealed, "module.exports = ")+len("module.exports = "):]
	if err := json.Unmarshal([]byte(strings.TrimSuffix(strings.TrimSpace(js), ";")), &apps); err != nil {
		t.Fatalf("the export's object: %v", err)
	}
	var names []string
	for _, app := range apps.Apps {
		names = append(names, app.Name)
		switch {
		case app.Name == "admin-server" && (app.Script != b.bin || app.Args[0] != "run" || app.Autostart == nil || *app.Autostart):
			t.Errorf("admin-server: %+v", app)
		case app.Name == "slot-a" && (app.Cwd != st.Slots["a"].Releases[0].Dir || app.Env["VERSION"] != "v7" || app.Env["SLOT_NAME"] != "a"):
			t.Errorf("slot-a: %+v", app)
		case app.Name >= "slot-b" && app.Name <= "slot-e" && (app.Script != b.bin || app.Args[0] != "placeholder" || app.Env["PORT"] == ""):
			t.Errorf("%s: %+v", app.Name, app)
		}
	}
	if strings.Join(names, " ") != "admin-server slot-a slot-b slot-c slot-d slot-e" {
		t.Errorf("apps %v", names)
	}

	// The agent goes; PM2 takes over its ports.
	b.stop(a)
	s := &pm2Stack{pm2: b.pm2, dir: dir, home: filepath.Join(dir, "home"), apps: map[string]string{"a": ""}}
	if err := os.Mkdir(s.home, 0o700); err != nil {
		t.Fatal(err)
	}
	s.env = append(cleanEnv(), "PM2_HOME="+s.home)
	s.ports = map[string]int{"admin": a.ports["admin"]}
	for _, name := range config.SlotNames {
		s.ports[name] = a.ports[name]
	}
	defer func() {
		if err := s.kill(); err != nil {
			t.Log(err)
		}
	}()
	if _, err := s.run(ctx, "start", file); err != nil {
		t.Fatal(err)
	}
	client := newClient()
	defer client.CloseIdleConnections()
	start := time.Now()
	if _, err := pollUntil(ctx, client, s.url("a", "/"), bodyIs("hello from a v7"), start, 30*time.Second, nil); err != nil {
		t.Error(err, s.logTail())
	}
	for _, name := range config.SlotNames[1:] {
		placeholder := func(status int, body []byte) bool {
			return status == 200 && strings.Contains(string(body), `"type":"placeholder"`) && strings.Contains(string(body), `"slot":"`+name+`"`)
		}
		if _, err := pollUntil(ctx, client, s.url(name, "/health"), placeholder, start, 30*time.Second, nil); err != nil {
			t.Error(err, s.logTail())
		}
	}
	out, err := s.run(ctx, "jlist")
	if err != nil {
		t.Fatal(err)
	}
	var list []struct {
		Name string `json:"name"`
		Env  struct {
			Status string `json:"status"`
		} `json:"pm2_env"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("pm2 jlist: %v", err)
	}
	for _, p := range list {
		if p.Name != "admin-server" && p.Env.Status != "online" {
			t.Errorf("PM2 app %s is %s", p.Name, p.Env.Status)
		}
	}
	t.Logf("PM2 %s runs the export: %d apps listed", b.pm2.version, len(list))
}

// testWriter sends the bench's progress lines to the test log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
