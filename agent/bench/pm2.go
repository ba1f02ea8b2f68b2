package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coder-slots/coder-slots/agent/config"
	"github.com/coder-slots/coder-slots/agent/internal/testkit"
	"github.com/coder-slots/coder-slots/agent/procgroup"
)

// PM2 is the stack name of the old setup's column.
const PM2 = "PM2"

// pm2Spec is the PM2 release installed from the npm registry.
const pm2Spec = "pm2@7"

// pm2CacheDir is where PM2 is installed, relative to the module root
// (ignored by git: .cache/).
var pm2CacheDir = filepath.Join(".cache", "pm2")

// placeholderJS is the old stack's placeholder server, one PM2 process per
// slot (PORT, SLOT_NAME), as the old ecosystem file ran it.
const placeholderJS = `const http = require('http');
const slot = process.env.SLOT_NAME;
const page = '<!doctype html><html><head><title>Slot ' + slot + '</title></head>' +
  '<body><h1>Slot ' + slot + ' is empty</h1><p>Deploy an app to this slot from the admin panel.</p></body></html>';
http.createServer((req, res) => {
  if (req.url === '/health') {
    res.writeHead(200, {'Content-Type': 'application/json'});
    res.end(JSON.stringify({status: 'healthy', slot: slot, type: 'placeholder'}));
    return;
  }
  res.writeHead(200, {'Content-Type': 'text/html'});
  res.end(page);
}).listen(Number(process.env.PORT), '127.0.0.1', () => console.log('placeholder ' + slot + ' on ' + process.env.PORT));
`

// adminJS is the old stack's admin server (its panel and API reduced to a
// health check and a page: only its footprint and boot matter here).
const adminJS = `const http = require('http');
http.createServer((req, res) => {
  if (req.url === '/health') {
    res.writeHead(200, {'Content-Type': 'application/json'});
    res.end(JSON.stringify({status: 'healthy', type: 'admin'}));
    return;
  }
  res.writeHead(200, {'Content-Type': 'text/html'});
  res.end('<!doctype html><html><head><title>Admin</title></head><body><h1>Slots</h1></body></html>');
}).listen(Number(process.env.PORT), '127.0.0.1', () => console.log('admin on ' + process.env.PORT));
`

// pm2ListJS times pm2.list() through PM2's programmatic API: it connects
// once, makes argv[3] warm-up calls then argv[4] timed ones, and prints the
// timings (ms) as a JSON array. argv[2] is the pm2 package directory.
const pm2ListJS = `const pm2 = require(process.argv[2]);
const warm = Number(process.argv[3]), n = Number(process.argv[4]);
const out = [];
pm2.connect((err) => {
  if (err) { console.error(String(err)); process.exit(1); }
  let i = 0;
  const next = () => {
    const t = process.hrtime.bigint();
    pm2.list((err, list) => {
      const d = Number(process.hrtime.bigint() - t) / 1e6;
      if (err) { console.error(String(err)); process.exit(1); }
      if (list.length !== 6) { console.error('expected 6 processes, got ' + list.length); process.exit(1); }
      if (i >= warm) out.push(d);
      if (++i < warm + n) { next(); return; }
      console.log(JSON.stringify(out));
      pm2.disconnect();
      process.exit(0);
    });
  };
  next();
});
`

// pm2Install is an installed PM2.
type pm2Install struct {
	pkg     string // the pm2 package directory (node_modules/pm2)
	bin     string // its CLI, bin/pm2
	version string
}

// ensurePM2 installs PM2 into the module's cache folder with npm, unless
// it is there already.
func ensurePM2(ctx context.Context, modDir string) (pm2Install, error) {
	prefix := filepath.Join(modDir, pm2CacheDir)
	in := pm2Install{pkg: filepath.Join(prefix, "node_modules", "pm2")}
	in.bin = filepath.Join(in.pkg, "bin", "pm2")
	manifest := filepath.Join(in.pkg, "package.json")
	if _, err := os.Stat(manifest); err != nil {
		if err := os.MkdirAll(prefix, 0o755); err != nil {
			return in, fmt.Errorf("create %s: %w", prefix, err)
		}
		if _, err := outputIn(ctx, modDir, "npm", "install", "--prefix", prefix, "--no-audit", "--no-fund", pm2Spec); err != nil {
			return in, fmt.Errorf("install PM2: %w", err)
		}
	}
	b, err := os.ReadFile(manifest)
	if err != nil {
		return in, fmt.Errorf("read PM2's package.json: %w", err)
	}
	var pkg struct{ Version string }
	if err := json.Unmarshal(b, &pkg); err != nil {
		return in, fmt.Errorf("read PM2's version from %s: %w", manifest, err)
	}
	if pkg.Version == "" {
		return in, fmt.Errorf("read PM2's version: %s has none", manifest)
	}
	in.version = pkg.Version
	return in, nil
}

// pm2Stack is one old stack: a PM2 daemon with its own PM2_HOME (never the
// user's ~/.pm2) running the admin server and one process per slot from a
// generated ecosystem.config.js, on free loopback ports.
type pm2Stack struct {
	pm2   pm2Install
	dir   string // ecosystem file and servers
	home  string // PM2_HOME
	env   []string
	ports map[string]int // "admin", "a"…"e"
	apps  map[string]string
	// known are the daemon and its descendants seen so far, killed at the
	// end if `pm2 kill` left them.
	known []procgroup.Identity
}

// newPM2Stack prepares (does not start) an old stack under a new directory
// in b.root, every slot with its placeholder.
func (b *bench) newPM2Stack() (*pm2Stack, error) {
	dir, err := os.MkdirTemp(b.root, "pm2-")
	if err != nil {
		return nil, fmt.Errorf("create PM2 stack directory: %w", err)
	}
	s := &pm2Stack{pm2: b.pm2, dir: dir, home: filepath.Join(dir, "home"), ports: map[string]int{}, apps: map[string]string{}}
	if err := os.Mkdir(s.home, 0o700); err != nil {
		return nil, fmt.Errorf("create PM2_HOME: %w", err)
	}
	for name, src := range map[string]string{"admin.js": adminJS, "placeholder.js": placeholderJS} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			return nil, fmt.Errorf("write %s: %w", name, err)
		}
	}
	for _, name := range append([]string{"admin"}, config.SlotNames...) {
		if s.ports[name], err = testkit.FreePortErr(); err != nil {
			return nil, err
		}
	}
	s.env = append(cleanEnv(), "PM2_HOME="+s.home)
	return s, s.writeEcosystem()
}

// setApp makes slot run server.js of appDir instead of its placeholder
// (in the ecosystem file; pm2 applies it at the next start).
func (s *pm2Stack) setApp(slot, appDir string) error {
	s.apps[slot] = appDir
	return s.writeEcosystem()
}

// ecosystemPath is the generated ecosystem file.
func (s *pm2Stack) ecosystemPath() string { return filepath.Join(s.dir, "ecosystem.config.js") }

// writeEcosystem writes ecosystem.config.js: the admin server, then one
// app per slot, placeholder or deployed app, with PORT and SLOT_NAME.
func (s *pm2Stack) writeEcosystem() error {
	type app struct {
		Name   string            `json:"name"`
		Script string            `json:"script"`
		Cwd    string            `json:"cwd"`
		Env    map[string]string `json:"env"`
	}
	apps := []app{{Name: "admin", Script: filepath.Join(s.dir, "admin.js"), Cwd: s.dir,
		Env: map[string]string{"PORT": strconv.Itoa(s.ports["admin"])}}}
	for _, slot := range config.SlotNames {
		a := app{Name: "slot-" + slot, Script: filepath.Join(s.dir, "placeholder.js"), Cwd: s.dir,
			Env: map[string]string{"PORT": strconv.Itoa(s.ports[slot]), "SLOT_NAME": slot}}
		if d, ok := s.apps[slot]; ok {
			a.Script, a.Cwd = filepath.Join(d, "server.js"), d
		}
		apps = append(apps, a)
	}
	js, err := json.MarshalIndent(map[string]any{"apps": apps}, "", "  ")
	if err != nil {
		return fmt.Errorf("encode the ecosystem file: %w", err)
	}
	if err := os.WriteFile(s.ecosystemPath(), append(append([]byte("module.exports = "), js...), ";\n"...), 0o644); err != nil {
		return fmt.Errorf("write the ecosystem file: %w", err)
	}
	return nil
}

// url is the loopback URL of path on the named port ("admin", "a"…"e").
func (s *pm2Stack) url(port, path string) string {
	return fmt.Sprintf("http://127.0.0.1:%d%s", s.ports[port], path)
}

// run execs the pm2 CLI (argument list, no shell) with this stack's
// PM2_HOME and returns its standard output.
func (s *pm2Stack) run(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	var out, errOut bytes.Buffer
	cmd := exec.CommandContext(ctx, s.pm2.bin, args...)
	cmd.Dir = s.dir
	cmd.Env = s.env
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	s.remember()
	if err != nil {
		return out.String(), fmt.Errorf("pm2 %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), nil
}

// daemonPID is the PID of the stack's PM2 daemon, 0 when it has none.
func (s *pm2Stack) daemonPID() int {
	b, err := os.ReadFile(filepath.Join(s.home, "pm2.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return pid
}

// remember records the daemon and its descendants, for kill.
func (s *pm2Stack) remember() {
	pid := s.daemonPID()
	if pid <= 0 {
		return
	}
	for _, p := range append([]int{pid}, procgroup.Descendants(pid)...) {
		if id, err := procgroup.Lookup(p); err == nil {
			s.known = append(s.known, id)
		}
	}
}

// start execs `pm2 start ecosystem.config.js` (which spawns the daemon
// when there is none).
func (s *pm2Stack) start(ctx context.Context) error {
	_, err := s.run(ctx, "start", s.ecosystemPath())
	return err
}

// waitAll polls the admin server and the five slots until each answers
// GET /health with 200 (and, for slots running the hello app, "ok"), and
// returns how long after since the last one answered.
func (s *pm2Stack) waitAll(ctx context.Context, client *http.Client, since time.Time) (time.Duration, error) {
	var all time.Duration
	for _, port := range append([]string{"admin"}, config.SlotNames...) {
		accept := ok200
		if _, ok := s.apps[port]; ok {
			accept = bodyIs("ok")
		}
		d, err := pollUntil(ctx, client, s.url(port, "/health"), accept, since, 20*time.Second, nil)
		if err != nil {
			return 0, fmt.Errorf("%w%s", err, s.logTail())
		}
		all = max(all, d)
	}
	return all, nil
}

// startReady starts the stack and waits until all six ports answer.
func (s *pm2Stack) startReady(ctx context.Context, client *http.Client) error {
	if err := s.start(ctx); err != nil {
		return err
	}
	_, err := s.waitAll(ctx, client, time.Now())
	return err
}

// kill runs `pm2 kill`, then SIGKILLs the process group and the process of
// everything of the stack still alive (the daemon runs in its own session,
// each app in its own process group). Safe to call twice.
func (s *pm2Stack) kill() error {
	s.remember()
	var err error
	if s.daemonPID() > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err = s.run(ctx, "kill")
		cancel()
	}
	for _, id := range s.known {
		if id.Alive() {
			_ = syscall.Kill(-id.PID, syscall.SIGKILL)
			_ = syscall.Kill(id.PID, syscall.SIGKILL)
		}
	}
	s.known = nil
	return err
}

// appPID is the PID of the named PM2 app, from `pm2 jlist`.
func (s *pm2Stack) appPID(ctx context.Context, name string) (int, error) {
	out, err := s.run(ctx, "jlist")
	if err != nil {
		return 0, err
	}
	var list []struct {
		Name string `json:"name"`
		PID  int    `json:"pid"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		return 0, fmt.Errorf("parse pm2 jlist: %w", err)
	}
	for _, p := range list {
		if p.Name == name && p.PID > 0 {
			return p.PID, nil
		}
	}
	return 0, fmt.Errorf("pm2 jlist: no running app %q", name)
}

// logTail is the end of the daemon's log, for error messages.
func (s *pm2Stack) logTail() string {
	b, err := os.ReadFile(filepath.Join(s.home, "pm2.log"))
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 1500 {
		b = b[len(b)-1500:]
	}
	return "\npm2.log (tail):\n" + string(b)
}

// kill ends a PM2 stack, logging what went wrong.
func (b *bench) killPM2(s *pm2Stack) {
	if err := s.kill(); err != nil {
		b.logf("%v", err)
	}
}
