package main

// End-to-end tests that a slot's secret env values stay masked in every
// output of a deploy that fails: what git push and `deploy --wait` print,
// the records (API, disk), the slot's page, the agent's own log.

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coder-slots/coder-slots/agent/deploy"
)

// leakySecret is the secret value the apps of these tests print.
const leakySecret = "sk-live-4f9a1c2e7b3d5f60"

// leaks reports the first piece (8 bytes or more) of leakySecret found in
// s, or "": a cut secret leaks as much as a whole one.
func leaks(s string) string {
	for i := 0; i+8 <= len(leakySecret); i++ {
		if piece := leakySecret[i : i+8]; strings.Contains(s, piece) {
			return piece
		}
	}
	return ""
}

// noLeak fails the test when what (named where) shows any of the secret.
func noLeak(t *testing.T, where, what string) {
	t.Helper()
	if piece := leaks(what); piece != "" {
		t.Errorf("%s shows the secret (%q):\n%s", where, piece, what)
	}
}

// leakyApp writes an app into work whose build prints the secret (whole,
// and across the 200-byte cut of the lines a failure quotes) and fails
// when failBuild, and whose server prints it and exits otherwise.
func leakyApp(t *testing.T, work string, failBuild bool) {
	t.Helper()
	writeFile(t, filepath.Join(work, "package.json"),
		`{"name":"leaky","version":"1.0.0","scripts":{"build":"sh build.sh","start":"node server.js"}}`+"\n")
	build := "echo \"the token is $API_TOKEN\"\nprintf '%0190d%s end\\n' 0 \"$API_TOKEN\"\n"
	if failBuild {
		build += "exit 1\n"
	}
	writeFile(t, filepath.Join(work, "build.sh"), build)
	writeFile(t, filepath.Join(work, "server.js"), "console.log('token ' + process.env.API_TOKEN); process.exit(3)\n")
}

func TestSecretsStayMaskedWhenADeployFails(t *testing.T) {
	a, work, repo := pushAgent(t)
	a.mustCLI("env", "a", "set", "API_TOKEN="+leakySecret)
	gitRun(t, work, "rm", "-q", "-r", "--cached", ".")
	for _, f := range []string{"package-lock.json", "server.js"} {
		if err := os.Remove(filepath.Join(work, f)); err != nil {
			t.Fatal(err)
		}
	}

	cases := []struct {
		name string
		// run deploys and returns what the user saw, and whether it
		// succeeded.
		run  func() (string, bool)
		want string // in the record's error
	}{
		{"git push, build fails", func() (string, bool) {
			leakyApp(t, work, true)
			commit(t, work, "build fails")
			out, ok := gitPush(t, work, nil, repo, "main")
			if !strings.Contains(out, "push refused") {
				t.Errorf("push output lacks the refusal:\n%s", out)
			}
			return out, ok
		}, "build failed"},
		{"deploy --wait, build fails", func() (string, bool) {
			out, errOut, code := a.cli("deploy", "a", "--dir", work, "--wait")
			return out + errOut, code == 0
		}, "build failed"},
		{"git push, app prints it and exits", func() (string, bool) {
			leakyApp(t, work, false)
			commit(t, work, "app exits")
			return gitPush(t, work, nil, repo, "main")
		}, "start command exited"},
	}
	for _, c := range cases {
		before := len(a.deploys())
		out, ok := c.run()
		if ok {
			t.Fatalf("%s: the deploy succeeded:\n%s", c.name, out)
		}
		noLeak(t, c.name+": what the user saw", out)
		recs := a.deploys()
		if len(recs) != before+1 || recs[0].Status != deploy.Failed || !strings.Contains(recs[0].Error, c.want) {
			t.Fatalf("%s: want a failed record saying %q, got %+v", c.name, c.want, recs[0])
		}
		if !strings.Contains(recs[0].Error, "********") {
			t.Errorf("%s: the record's error does not quote the masked output: %q", c.name, recs[0].Error)
		}
		noLeak(t, c.name+": /api/slots/a/deploys", recs[0].Error)
		var rec deploy.Record
		a.apiJSON("/api/deploys/"+recs[0].ID, &rec)
		if rec.ID != recs[0].ID {
			t.Fatalf("%s: /api/deploys/%s: %+v", c.name, recs[0].ID, rec)
		}
		noLeak(t, c.name+": /api/deploys/{id}", rec.Error)
		code, page := body(t, a.url("admin", "/slots/a"))
		if code != 200 || !strings.Contains(page, recs[0].ID) {
			t.Fatalf("%s: the slot's page (%d) does not list the deploy:\n%s", c.name, code, page)
		}
		noLeak(t, c.name+": the slot's page", page)
	}

	// Nothing the agent wrote shows it: deploy records and logs, the
	// slot's logs, the agent's own log ("deploy finished").
	for _, dir := range []string{"deploys", "logs"} {
		err := filepath.WalkDir(filepath.Join(a.dataDir, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			noLeak(t, path, string(b))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if log := a.stderr(); !strings.Contains(log, "deploy finished") {
		t.Fatalf("the agent did not log the deploys:\n%s", log)
	} else {
		noLeak(t, "the agent's log", log)
	}
}
