package main

// End-to-end tests that a slot's secret env values stay masked in every
// output of a deploy that fails: what git push, `deploy --wait` and
// `status` print, the records (API, disk), the slot's and the deploy's
// pages, the following's status, the agent's own log.

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coder-slots/coder-slots/agent/deploy"
	"github.com/coder-slots/coder-slots/agent/follow"
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

// leakyTree makes work, a copy of the sample app, ready for leakyApp.
func leakyTree(t *testing.T, work string) {
	t.Helper()
	gitRun(t, work, "rm", "-q", "-r", "--cached", ".")
	for _, f := range []string{"package-lock.json", "server.js"} {
		if err := os.Remove(filepath.Join(work, f)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSecretsStayMaskedWhenADeployFails(t *testing.T) {
	// The app that exits must be seen exiting, not timed out first: on a
	// loaded machine npm took more than fastDeploys' 4 s to run it.
	a, work, repo := pushAgent(t, "SLOTAGENT_HEALTH_LISTEN_TIMEOUT=60s")
	a.mustCLI("env", "a", "set", "API_TOKEN="+leakySecret)
	leakyTree(t, work)
	// Slot b follows main of an upstream repository, with the secret in
	// its env.
	upstream, upWork := sampleRepo(t, t.TempDir())
	a.mustCLI("env", "b", "set", "API_TOKEN="+leakySecret)
	a.mustCLI("deploy", "b", "--repo", upstream, "--ref", "main", "--wait")
	a.mustCLI("follow", "b", "--interval", "1s")
	leakyTree(t, upWork)

	cases := []struct {
		name, slot string
		// run deploys and returns what the user saw, and whether it
		// succeeded.
		run  func() (string, bool)
		want string // in the record's error
		// subject is the record's: its commit's subject, masked ("" for
		// a folder).
		subject string
	}{
		{"git push, build fails", "a", func() (string, bool) {
			leakyApp(t, work, true)
			commit(t, work, "build fails")
			out, ok := gitPush(t, work, nil, repo, "main")
			if !strings.Contains(out, "push refused") {
				t.Errorf("push output lacks the refusal:\n%s", out)
			}
			return out, ok
		}, "build failed", "build fails"},
		{"deploy --wait, build fails", "a", func() (string, bool) {
			out, errOut, code := a.cli("deploy", "a", "--dir", work, "--wait")
			return out + errOut, code == 0
		}, "build failed", ""},
		{"git push, app prints it and exits", "a", func() (string, bool) {
			leakyApp(t, work, false)
			commit(t, work, "app exits")
			return gitPush(t, work, nil, repo, "main")
		}, "start command exited", "app exits"},
		{"follow, build fails", "b", func() (string, bool) {
			// Its commit message quotes the secret too.
			leakyApp(t, upWork, true)
			commitAndPush(t, upWork, upstream, "build fails with "+leakySecret)
			sha := gitRun(t, upWork, "rev-parse", "HEAD")
			st := a.waitFollow("b", "the failed commit noted", func(s follow.Status) bool { return s.FailedCommit == sha })
			var answer string
			for _, path := range []string{"/api/slots/b/follow", "/api/slots", "/api/slots/b/releases"} {
				_, b := body(t, a.url("admin", path))
				answer += path + ": " + b + "\n"
			}
			return st.Message + "\n" + a.mustCLI("status") + a.mustCLI("status", "--json") + answer, false
		}, "build failed", "build fails with ********"},
	}
	for _, c := range cases {
		before := len(a.settled(c.slot))
		out, ok := c.run()
		if ok {
			t.Fatalf("%s: the deploy succeeded:\n%s", c.name, out)
		}
		noLeak(t, c.name+": what the user saw", out)
		recs := a.settled(c.slot)
		if len(recs) != before+1 || recs[0].Status != deploy.Failed || !strings.Contains(recs[0].Error, c.want) {
			t.Fatalf("%s: want a failed record saying %q, got %+v", c.name, c.want, recs[0])
		}
		if !strings.Contains(recs[0].Error, "********") {
			t.Errorf("%s: the record's error does not quote the masked output: %q", c.name, recs[0].Error)
		}
		_, list := body(t, a.url("admin", "/api/slots/"+c.slot+"/deploys"))
		noLeak(t, c.name+": /api/slots/{slot}/deploys", list)
		code, rec := body(t, a.url("admin", "/api/deploys/"+recs[0].ID))
		if code != 200 || !strings.Contains(rec, recs[0].ID) {
			t.Fatalf("%s: /api/deploys/%s: %d %s", c.name, recs[0].ID, code, rec)
		}
		noLeak(t, c.name+": /api/deploys/{id}", rec)
		for _, page := range []string{"/slots/" + c.slot, "/deploys/" + recs[0].ID} {
			code, html := body(t, a.url("admin", page))
			if code != 200 || !strings.Contains(html, recs[0].ID) {
				t.Fatalf("%s: %s (%d) does not show the deploy:\n%s", c.name, page, code, html)
			}
			noLeak(t, c.name+": "+page, html)
		}
		if recs[0].Subject != c.subject || (c.slot == "b") != (recs[0].Trigger == deploy.TriggerFollow) {
			t.Errorf("%s: record %s with subject %q, want subject %q", c.name, recs[0].Trigger, recs[0].Subject, c.subject)
		}
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
