package main

// End-to-end test that the agent writes nothing through the symlinks of a
// pushed tree.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coder-slots/coder-slots/agent/buildpack"
	"github.com/coder-slots/coder-slots/agent/state"
)

func TestPushedLinksAreNotWrittenThrough(t *testing.T) {
	a, work, repo := pushAgent(t)
	if out, ok := gitPush(t, work, nil, repo, "main"); !ok {
		t.Fatalf("first push:\n%s\nagent:\n%s", out, a.stderr())
	}
	victim := filepath.Join(t.TempDir(), "victim")
	writeFile(t, victim, "mine\n")

	// Same lockfile: node_modules is reused and the lock hash marker
	// written, where the tree has links to a file outside and to files of
	// the agent's data dir; node_modules itself links to the data dir. The
	// last push fails its health gate, so nothing rewrites the state file
	// afterwards.
	pushes := []struct {
		version, target string
		serves          bool
	}{
		{"v2", victim, true},
		{"v3", filepath.Join(repo, "config"), true},
		{"v4", filepath.Join(a.dataDir, "state.json"), false},
	}
	for _, p := range pushes {
		for name, to := range map[string]string{buildpack.LockHashFile + ".tmp": p.target, buildpack.LockHashFile: p.target, "node_modules": a.dataDir} {
			path := filepath.Join(work, name)
			_ = os.Remove(path)
			if err := os.Symlink(to, path); err != nil {
				t.Fatal(err)
			}
		}
		setVersion(t, work, p.version)
		if !p.serves {
			writeFile(t, filepath.Join(work, "server.js"), "process.exit(3)\n")
		}
		gitRun(t, work, "add", "-A", "-f")
		gitRun(t, work, "commit", "-q", "-m", p.version+" with links to "+p.target)
		before, err := os.ReadFile(p.target)
		if err != nil {
			t.Fatal(err)
		}
		out, ok := gitPush(t, work, nil, repo, "main")
		if ok != p.serves || !strings.Contains(out, "reused node_modules") {
			t.Fatalf("push with links to %s (want success %v):\n%s\nagent:\n%s", p.target, p.serves, out, a.stderr())
		}
		if after, err := os.ReadFile(p.target); err != nil || string(after) != string(before) {
			t.Fatalf("%s was written through a link of the pushed tree: %q, %v", p.target, after, err)
		}
		want := "hello " + p.version + " 1m"
		if !p.serves {
			want = "hello v3 1m"
		}
		if _, b := body(t, a.url("a", "/")); b != want {
			t.Fatalf("after the push with links to %s: %q, want %q", p.target, b, want)
		}
		for _, dir := range []string{"deploys", "git", "slots"} {
			if _, err := os.Stat(filepath.Join(a.dataDir, dir)); err != nil {
				t.Fatalf("the data dir lost %s: %v", dir, err)
			}
		}
	}
	if _, err := state.Load(filepath.Join(a.dataDir, "state.json")); err != nil {
		t.Fatalf("state file: %v", err)
	}
}
