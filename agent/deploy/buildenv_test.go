package deploy

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// buildScript fails without API_KEY and DATABASE_URL, prints the hash of
// API_KEY, and prints both values, which the deploy log must mask.
const buildScript = `const crypto = require('crypto');
for (const k of ['API_KEY', 'DATABASE_URL', 'SLOT_NAME']) {
  if (!process.env[k]) { console.error(k + ' is missing at build time'); process.exit(1); }
}
console.log('API_KEY sha256 ' + crypto.createHash('sha256').update(process.env.API_KEY).digest('hex'));
console.log('API_KEY is ' + process.env.API_KEY + ', DATABASE_URL is ' + process.env.DATABASE_URL);
console.log('built for slot ' + process.env.SLOT_NAME + (process.env.PORT ? ' on PORT ' + process.env.PORT : ''));
`

// TestBuildGetsTheAppsEnvMasked: the build command sees the slot's env and
// the database's, as the app will, and the deploy log shows neither value.
func TestBuildGetsTheAppsEnvMasked(t *testing.T) {
	const dbURL = "postgresql://slot_a:db-password-4711@127.0.0.1:5432/slot_a"
	e := newEngineWithDB(t, nil, map[string]string{"DATABASE_URL": dbURL, "PGPASSWORD": "db-password-4711"})
	dir := appDir(t, appServer)
	if err := os.WriteFile(filepath.Join(dir, "build.js"), []byte(buildScript), 0o644); err != nil {
		t.Fatal(err)
	}
	deploy := func(env map[string]string) (Record, string) {
		t.Helper()
		rec, err := e.d.Deploy("a", Request{Dir: dir, Build: "node build.js", Start: "node server.js", Env: env})
		if err != nil {
			t.Fatal(err)
		}
		rec = e.wait(t, rec.ID)
		lines, _, cancel, err := e.d.Logs(rec.ID)
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		return rec, strings.Join(lines, "\n")
	}

	rec, log := deploy(nil)
	if rec.Status != Failed || !strings.Contains(log, "API_KEY is missing at build time") {
		t.Fatalf("deploy without API_KEY: %s %s\n%s", rec.Status, rec.Error, log)
	}

	const key = "key-value-0123456789"
	rec, log = deploy(map[string]string{"API_KEY": key, "VERSION": "v2"})
	if rec.Status != Succeeded {
		t.Fatalf("deploy with API_KEY: %s %s\n%s", rec.Status, rec.Error, log)
	}
	sum := sha256.Sum256([]byte(key))
	for _, want := range []string{"API_KEY sha256 " + hex.EncodeToString(sum[:]), "built for slot a\n"} {
		if !strings.Contains(log+"\n", want) {
			t.Errorf("deploy log lacks %q:\n%s", want, log)
		}
	}
	for _, secret := range []string{key, "db-password-4711"} {
		if strings.Contains(log, secret) {
			t.Errorf("deploy log shows a secret:\n%s", log)
		}
	}
	if got := e.serves(t); got != "v2" {
		t.Errorf("serves %q", got)
	}
}
