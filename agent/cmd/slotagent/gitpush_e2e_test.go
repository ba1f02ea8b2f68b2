package main

// End-to-end tests of `git push` deploys: real git pushing over a path,
// file:// and ssh:// (a real sshd on loopback) into a slot's repository,
// whose pre-receive hook is the slotagent binary.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/coder-slots/coder-slots/agent/admin"
	"github.com/coder-slots/coder-slots/agent/config"
	"github.com/coder-slots/coder-slots/agent/deploy"
	"github.com/coder-slots/coder-slots/agent/internal/testkit"
	"github.com/coder-slots/coder-slots/agent/reaper"
	"github.com/coder-slots/coder-slots/agent/state"
)

// gitPush runs `git push args...` in work and returns its output and
// whether it succeeded.
func gitPush(t *testing.T, work string, env []string, args ...string) (string, bool) {
	t.Helper()
	cmd := exec.Command("git", append([]string{"push"}, args...)...)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer // one buffer for both would be written by two goroutines
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	err := reaper.RunTo(ctx, cmd, &out, &errOut)
	var ee *reaper.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("git push: %v", err)
	}
	return errOut.String() + out.String(), err == nil
}

// commit commits everything in work.
func commit(t *testing.T, work, msg string) string {
	t.Helper()
	gitRun(t, work, "add", "-A")
	gitRun(t, work, "commit", "-q", "-m", msg)
	return gitRun(t, work, "rev-parse", "HEAD")
}

// refOf is what ref points to in repo ("" when it does not exist).
func refOf(t *testing.T, repo, ref string) string {
	t.Helper()
	cmd := exec.Command("git", "--git-dir="+repo, "rev-parse", "--verify", "--quiet", ref)
	out, _ := reaper.Output(context.Background(), cmd)
	return strings.TrimSpace(string(out))
}

// deploys lists slot a's deploy records, newest first, once none runs (a
// push's deploy ends just after git moved the branch and the push
// returned).
func (a *agent) deploys() []admin.DeployRecord {
	var list admin.DeployList
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		a.apiJSON("/api/slots/a/deploys", &list)
		if len(list.Deploys) == 0 || list.Deploys[0].Status != deploy.Running || time.Now().After(deadline) {
			return list.Deploys
		}
	}
}

// controlPost posts body as JSON to the agent's control socket and returns
// the status and the answer.
func controlPost(t *testing.T, a *agent, path string, body any) (int, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", config.SocketPath(a.dataDir))
	}}}
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Post("http://slotagent"+path, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(answer)
}

// pushAgent starts an agent (with fastDeploys, then env: a later value
// wins), makes the sample app's work tree and asks for slot a's remote;
// it returns the agent, the work tree and slot a's repository.
func pushAgent(t *testing.T, env ...string) (a *agent, work, repo string) {
	t.Helper()
	a = newAgent(t)
	_, work = sampleRepo(t, t.TempDir())
	a.start(append(append(slices.Clip(fastDeploys), "CODER_WORKSPACE_NAME=dev"), env...)...)
	out := a.mustCLI("git-remote", "a")
	repo = filepath.Join(a.dataDir, "git", "a.git")
	if !strings.Contains(out, "git remote add slot-a coder.dev:"+repo) || !strings.Contains(out, "git push slot-a main") {
		t.Fatalf("git-remote output:\n%s", out)
	}
	return a, work, repo
}

func TestGitPushDeploysAndRejectsFailedDeploys(t *testing.T) {
	a, work, repo := pushAgent(t)

	// First push, over a local path: npm ci, health gate, serving.
	out, ok := gitPush(t, work, nil, repo, "main")
	if !ok {
		t.Fatalf("first push failed:\n%s\nagent:\n%s", out, a.stderr())
	}
	for _, want := range []string{"remote: ", "==> fetch", "==> install", "npm ci", "==> health", "==> waiting for git", "slotagent: slot a serves ", "[new branch]"} {
		if !strings.Contains(out, want) {
			t.Errorf("push output lacks %q:\n%s", want, out)
		}
	}
	if code, b := body(t, a.url("a", "/")); code != 200 || b != "hello v1 1m" {
		t.Fatalf("after the first push: %d %q", code, b)
	}
	v1 := gitRun(t, work, "rev-parse", "HEAD")
	rec := a.deploys()[0]
	if rec.Trigger != deploy.TriggerGitPush || rec.Ref != "main" || rec.Commit != v1 || rec.Status != deploy.Succeeded {
		t.Fatalf("record of the push: %+v", rec)
	}

	// Second push, over file://, under load: zero downtime as with deploy.
	setVersion(t, work, "v2")
	v2 := commit(t, work, "v2")
	l := startLoad(a.url("a", "/"))
	out, ok = gitPush(t, work, nil, "file://"+repo, "main")
	l.stop()
	if !ok || !strings.Contains(out, "reused node_modules") {
		t.Fatalf("second push:\n%s", out)
	}
	if _, b := body(t, a.url("a", "/")); b != "hello v2 1m" || refOf(t, repo, "refs/heads/main") != v2 {
		t.Fatalf("after the second push: %q, ref %s", b, refOf(t, repo, "refs/heads/main"))
	}
	if l.failed != 0 {
		t.Fatalf("requests failed during the push's cutover: %+v", l)
	}

	// Broken apps are rejected: the ref stays, v2 keeps serving.
	serving := a.processes().Processes[1]
	broken := []struct {
		name, want string
		change     func()
	}{
		{"crash at boot", "start command exited", func() {
			writeFile(t, filepath.Join(work, "server.js"), "console.error('boom'); process.exit(3)\n")
		}},
		{"no start command", "no start command found", func() {
			if err := os.Remove(filepath.Join(work, "server.js")); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, c := range broken {
		gitRun(t, work, "reset", "-q", "--hard", v2)
		c.change()
		commit(t, work, c.name)
		before := len(a.deploys())
		l := startLoad(a.url("a", "/"))
		out, ok := gitPush(t, work, nil, repo, "main")
		l.stop()
		if ok || !strings.Contains(out, c.want) || !strings.Contains(out, "pre-receive hook declined") || !strings.Contains(out, "push refused") {
			t.Errorf("%s: push not rejected with %q:\n%s", c.name, c.want, out)
		}
		if got := refOf(t, repo, "refs/heads/main"); got != v2 {
			t.Errorf("%s: the branch moved to %s", c.name, got)
		}
		if l.failed != 0 || l.bodies["hello v2 1m"] == 0 {
			t.Errorf("%s: v2 did not keep serving: %+v", c.name, l)
		}
		if recs := a.deploys(); len(recs) != before+1 || recs[0].Status != deploy.Failed || recs[0].Trigger != deploy.TriggerGitPush {
			t.Errorf("%s: records %+v", c.name, recs[0])
		}
	}
	if after := a.processes().Processes[1]; after.Release != serving.Release || after.PID != serving.PID {
		t.Fatalf("slot a changed: %+v -> %+v", serving, after)
	}

	// A branch with a lockfile change reinstalls and becomes the tracked one.
	gitRun(t, work, "reset", "-q", "--hard", v2)
	gitRun(t, work, "checkout", "-q", "-b", "feature")
	for _, f := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "buildpack", "testdata", "app-ms-isnumber", f))
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(work, f), string(b))
	}
	setVersion(t, work, "v3")
	v3 := commit(t, work, "v3 with is-number")
	out, ok = gitPush(t, work, nil, repo, "feature")
	if !ok || !strings.Contains(out, "npm ci") || strings.Contains(out, "reused node_modules") || !strings.Contains(out, "it now tracks branch feature (was main)") {
		t.Fatalf("push of a branch with new dependencies:\n%s", out)
	}
	if _, b := body(t, a.url("a", "/")); b != "hello v3 1m" {
		t.Fatalf("after the feature push: %q", b)
	}
	if rec := a.deploys()[0]; rec.Ref != "feature" || rec.Commit != v3 {
		t.Fatalf("record: %+v", rec)
	}
	if out := a.mustCLI("git-remote", "a"); !strings.Contains(out, "git push slot-a feature") {
		t.Fatalf("git-remote after the feature push:\n%s", out)
	}
	// The slot's page shows the same, with a copy button.
	if code, page := body(t, a.url("admin", "/slots/a")); code != 200 || !strings.Contains(page, "git remote add slot-a coder.dev:"+repo) ||
		!strings.Contains(page, "git push slot-a feature") || !strings.Contains(page, `data-copy="git-commands"`) {
		t.Fatalf("slot page (%d) lacks the git remote:\n%s", code, page)
	}
}

func TestGitPushRefusesBadInputAndChangesNothing(t *testing.T) {
	a, work, repo := pushAgent(t)
	if out, ok := gitPush(t, work, nil, repo, "main"); !ok {
		t.Fatalf("first push:\n%s", out)
	}
	v1 := gitRun(t, work, "rev-parse", "HEAD")
	gitRun(t, work, "tag", "v1")
	setVersion(t, work, "other")
	gitRun(t, work, "commit", "-q", "--amend", "-a", "-m", "rewritten")

	evil := filepath.Join(t.TempDir(), "pwned")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"force-push", []string{"--force", repo, "main"}, "force-push refused"},
		{"delete", []string{repo, ":main"}, "use `slotagent stop a`"},
		{"tag", []string{repo, "v1"}, "tags are not deployed"},
		{"shell metacharacters", []string{repo, "HEAD:refs/heads/tags/x$(touch${IFS}" + evil + ")"}, `invalid branch name "tags/x$(touch`},
		{"a pseudo-ref's name", []string{repo, "HEAD:refs/heads/FETCH_HEAD"}, `invalid branch name "FETCH_HEAD"`},
		{"a full ref as a branch name", []string{repo, "HEAD:refs/heads/refs/heads/main"}, `invalid branch name "refs/heads/main"`},
		{"two branches", []string{repo, "HEAD:refs/heads/one", "HEAD:refs/heads/two"}, "push one branch at a time"},
		{"not a branch", []string{repo, "HEAD:refs/notes/x"}, "only branches are deployed"},
	}
	before := a.deploys()
	for _, c := range cases {
		out, ok := gitPush(t, work, nil, c.args...)
		if ok || !strings.Contains(out, "remote: slotagent: push refused: ") || !strings.Contains(out, c.want) {
			t.Errorf("%s: want a remote: line saying %q:\n%s", c.name, c.want, out)
		}
	}
	if _, err := os.Stat(evil); err == nil {
		t.Fatal("a ref name ran a command")
	}
	refs := gitRun(t, repo, "for-each-ref", "--format=%(refname) %(objectname)")
	if refs != "refs/heads/main "+v1 {
		t.Fatalf("the repository's refs changed:\n%s", refs)
	}
	if after := a.deploys(); len(after) != len(before) {
		t.Fatalf("refused pushes deployed: %d records, were %d", len(after), len(before))
	}
	if _, b := body(t, a.url("a", "/")); b != "hello v1 1m" {
		t.Fatalf("slot a serves %q", b)
	}

	// The push endpoint applies every push rule itself (the hook is only
	// the first check), and only on the control socket. and only on the control socket.
	const null = "0000000000000000000000000000000000000000"
	for _, c := range []struct {
		p    deploy.Push
		want string
	}{
		{deploy.Push{Branch: "main\ndeploy succeeded: forged", Old: null, Commit: v1}, "invalid branch name"},
		{deploy.Push{Branch: "FETCH_HEAD", Old: null, Commit: v1}, "invalid branch name"},
		{deploy.Push{Branch: "main", Old: null, Commit: v1}, "branch main was created meanwhile"},
		{deploy.Push{Branch: "main", Old: v1, Commit: null}, "deleting a branch is refused"},
		{deploy.Push{Branch: "main", Old: "--all", Commit: v1}, "is not a full commit id"},
		{deploy.Push{Branch: "main", Old: v1, Commit: gitRun(t, work, "rev-parse", "HEAD")}, "is not in the slot's repository"},
	} {
		code, answer := controlPost(t, a, "/api/slots/a/push", c.p)
		if code != 400 || !strings.Contains(answer, c.want) {
			t.Errorf("POST push %+v over the control socket: %d %s, want 400 %q", c.p, code, answer, c.want)
		}
	}
	raw := `{"branch":"main","old":"` + v1 + `","commit":"` + v1 + `"}`
	status := testkit.RawRequest(t, "127.0.0.1:"+strconv.Itoa(a.ports["admin"]), "POST /api/slots/a/push HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"+
		"Sec-Fetch-Site: same-origin\r\nContent-Length: "+strconv.Itoa(len(raw))+"\r\nConnection: close\r\n\r\n"+raw)
	if !strings.HasPrefix(status, "HTTP/1.1 403 ") || !strings.Contains(status, "control socket only") {
		t.Errorf("push on the admin port:\n%s", status)
	}
	if after := a.deploys(); len(after) != len(before) {
		t.Fatalf("refused API pushes deployed: %d records, were %d", len(after), len(before))
	}

	// A slot that does not exist: no repository for it, and a repository
	// made by hand for an unknown slot is refused by the agent.
	if out, ok := gitPush(t, work, nil, filepath.Join(a.dataDir, "git", "z.git"), "main"); ok || !strings.Contains(out, "does not appear to be a git repository") {
		t.Fatalf("push to slot z:\n%s", out)
	}
	for _, name := range []string{"z", "a/../b", "../a", "a/"} {
		if out, errOut, code := a.cli("git-remote", name); code == 0 || !strings.Contains(errOut, fmt.Sprintf("unknown slot %q", name)) {
			t.Errorf("git-remote %s: exit %d %s%s", name, code, out, errOut)
		}
	}
	if answer := testkit.RawRequest(t, "127.0.0.1:"+strconv.Itoa(a.ports["admin"]), "GET /api/slots/a/../b/git-remote HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"); !strings.HasPrefix(answer, "HTTP/1.1 400 ") {
		t.Errorf("an unclean path on the admin port:\n%s", answer)
	}

	// A user who may not open the control socket is told so (it is not
	// that no agent runs).
	if os.Geteuid() != 0 {
		t.Log("not root: the other user's case is skipped")
	} else {
		// A copy of the binary that the other user may run.
		dir, err := os.MkdirTemp("", "slotagent-other-user")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(dir) })
		b, err := os.ReadFile(binary)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "slotagent"), b, 0o755)
		}
		if err == nil {
			err = os.Chmod(dir, 0o755)
		}
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(filepath.Join(dir, "slotagent"), "git-remote", "a")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "SLOTAGENT_DATA_DIR="+a.dataDir, "HOME="+dir)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		if out, err := reaper.Output(context.Background(), cmd); err == nil || !strings.Contains(err.Error()+string(out), "permission denied: this user may not open the agent's control socket") {
			t.Errorf("git-remote as another user: %v %s", err, out)
		}
	}
	fake := filepath.Join(a.dataDir, "git", "z.git")
	if err := exec.Command("cp", "-a", repo, fake).Run(); err != nil {
		t.Fatal(err)
	}
	gitRun(t, work, "checkout", "-q", "-b", "fresh")
	if out, ok := gitPush(t, work, nil, fake, "fresh"); ok || !strings.Contains(out, `remote: slotagent: push refused: unknown slot "z"`) {
		t.Fatalf("push to a repository of an unknown slot:\n%s", out)
	}

	// No agent: a clear message, nothing moves.
	a.signal(15)
	a.wait(15 * time.Second)
	a.child = nil
	out, ok := gitPush(t, work, nil, repo, "fresh")
	if ok || !strings.Contains(out, "remote: slotagent: push refused: no agent is running") {
		t.Fatalf("push without an agent:\n%s", out)
	}
	if got := refOf(t, repo, "refs/heads/fresh"); got != "" {
		t.Fatalf("branch created without an agent: %s", got)
	}
}

// A push that git does not accept changes nothing that serves; a push it
// accepts is what serves (issue 25): git may refuse a branch's update after
// pre-receive accepted the push.
func TestGitPushServesWhatGitAccepts(t *testing.T) {
	a, work, repo := pushAgent(t)
	if out, ok := gitPush(t, work, nil, repo, "main"); !ok {
		t.Fatalf("first push:\n%s\nagent:\n%s", out, a.stderr())
	}
	v1 := gitRun(t, work, "rev-parse", "HEAD")
	serving := a.processes().Processes[1]
	unchanged := func(what string, branch string) {
		t.Helper()
		if code, b := body(t, a.url("a", "/")); code != 200 || b != "hello v1 1m" {
			t.Fatalf("%s: slot a serves %d %q", what, code, b)
		}
		if now := a.processes().Processes[1]; now.Release != serving.Release || now.PID != serving.PID {
			t.Fatalf("%s: slot a changed: %+v -> %+v", what, serving, now)
		}
		if out := a.mustCLI("git-remote", "a"); !strings.Contains(out, "git push slot-a main\n") {
			t.Fatalf("%s: git-remote:\n%s", what, out)
		}
		rec := a.deploys()[0]
		if rec.Status != deploy.Failed || rec.Ref != branch || !strings.Contains(rec.Error, "git did not move branch "+branch) {
			t.Fatalf("%s: record %+v", what, rec)
		}
	}

	// Deterministic: main/x cannot exist beside main, which git finds as
	// it locks the ref, after pre-receive.
	setVersion(t, work, "v2")
	commit(t, work, "v2")
	out, ok := gitPush(t, work, nil, repo, "HEAD:refs/heads/main/x")
	if ok || !strings.Contains(out, "'refs/heads/main' exists; cannot create 'refs/heads/main/x'") {
		t.Fatalf("push of main/x beside main:\n%s", out)
	}
	if refOf(t, repo, "refs/heads/main/x") != "" || refOf(t, repo, "refs/heads/main") != v1 {
		t.Fatalf("refs moved: main %s", refOf(t, repo, "refs/heads/main"))
	}
	unchanged("main/x", "main/x")

	// The race: C is pushed from v1; while its deploy runs, main moves to
	// B (another writer, here update-ref); git then refuses C.
	gitRun(t, work, "reset", "-q", "--hard", v1)
	writeFile(t, filepath.Join(work, "server.js"), "setTimeout(() => {\n"+sampleServer+"}, 1500);\n")
	setVersion(t, work, "c")
	commit(t, work, "c, slow to listen")
	b := gitRun(t, repo, "commit-tree", "-p", v1, "-m", "b", v1+"^{tree}")
	done := make(chan struct{})
	go func() {
		defer close(done)
		out, ok = gitPush(t, work, nil, repo, "main")
	}()
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
		var list admin.DeployList
		a.apiJSON("/api/slots/a/deploys", &list)
		if r := list.Deploys[0]; r.Status == deploy.Running && slices.ContainsFunc(r.Stages, func(s deploy.Stage) bool { return s.Name == "start" }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the push's deploy did not start its app: %+v", list.Deploys[0])
		}
	}
	gitRun(t, repo, "update-ref", "refs/heads/main", b, v1)
	<-done
	if ok || !strings.Contains(out, "is at "+b+" but expected "+v1) {
		t.Fatalf("push of C after main moved:\n%s", out)
	}
	if refOf(t, repo, "refs/heads/main") != b {
		t.Fatalf("main is at %s, want B %s", refOf(t, repo, "refs/heads/main"), b)
	}
	unchanged("C", "main")
}

func TestConcurrentGitPushes(t *testing.T) {
	a, work, repo := pushAgent(t)
	// The app takes a second to listen, so that the two deploys overlap.
	writeFile(t, filepath.Join(work, "server.js"), "setTimeout(() => {\n"+sampleServer+"}, 1000);\n")
	commit(t, work, "slow")
	other := t.TempDir()
	gitRun(t, other, "clone", "-q", work, ".")

	var wg sync.WaitGroup
	outs, oks := make([]string, 2), make([]bool, 2)
	for i, w := range []struct{ dir, branch string }{{work, "main"}, {other, "HEAD:refs/heads/other"}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i], oks[i] = gitPush(t, w.dir, nil, repo, w.branch)
		}()
	}
	wg.Wait()
	if oks[0] == oks[1] {
		t.Fatalf("want one push deployed and one rejected:\n--- 1:\n%s\n--- 2:\n%s", outs[0], outs[1])
	}
	won, lost := outs[0], outs[1]
	if oks[1] {
		won, lost = lost, won
	}
	recs := a.deploys()
	if len(recs) != 1 || recs[0].Status != deploy.Succeeded || !strings.Contains(won, recs[0].ID) {
		t.Fatalf("records: %+v\nwinner:\n%s", recs, won)
	}
	if !strings.Contains(lost, "a deploy is already running on this slot (deploy "+recs[0].ID+")") {
		t.Fatalf("the rejected push does not name the running deploy %s:\n%s", recs[0].ID, lost)
	}
	if refs := gitRun(t, repo, "for-each-ref", "--format=%(refname)"); strings.Count(refs, "\n") != 0 {
		t.Fatalf("both pushes moved a ref:\n%s", refs)
	}

	// A push while `slotagent deploy` runs is rejected the same way.
	out := a.mustCLI("deploy", "a", "--dir", work)
	id := strings.Fields(strings.TrimPrefix(out, "deploy "))[0]
	writeFile(t, filepath.Join(work, "extra.txt"), "x\n")
	commit(t, work, "during a deploy")
	before := refOf(t, repo, "refs/heads/main")
	if out, ok := gitPush(t, work, nil, repo, "main"); ok || !strings.Contains(out, "a deploy is already running on this slot (deploy "+id+")") {
		t.Fatalf("a push during deploy %s:\n%s", id, out)
	}
	if got := refOf(t, repo, "refs/heads/main"); got != before {
		t.Fatalf("the branch moved during a deploy: %s", got)
	}
}

// sshd runs Debian's sshd as a child on a free loopback port, with its own
// host key and an authorized_keys for a fresh client key, all in a temp
// folder, and returns an ssh config file whose host alias "coder.dev"
// reaches it as the current user (as `coder config-ssh` sets up a
// workspace's host on a laptop).
func sshd(t *testing.T) string {
	t.Helper()
	const bin = "/usr/sbin/sshd"
	if _, err := os.Stat(bin); err != nil {
		t.Skip("no sshd: install Debian's openssh-server")
	}
	// As root, sshd insists on its privilege separation folder, which
	// Debian's service makes at start: make it the same way if missing.
	if os.Geteuid() == 0 {
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	keygen := func(name string) {
		out, err := reaper.Output(context.Background(), exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", filepath.Join(dir, name)))
		if err != nil {
			t.Fatalf("ssh-keygen: %v %s", err, out)
		}
	}
	keygen("host_key")
	keygen("client_key")
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	login := me.Username
	pub, _ := os.ReadFile(filepath.Join(dir, "client_key.pub"))
	writeFile(t, filepath.Join(dir, "authorized_keys"), string(pub))
	port := testkit.FreePort(t)
	writeFile(t, filepath.Join(dir, "sshd_config"), strings.Join([]string{
		"Port " + strconv.Itoa(port),
		"ListenAddress 127.0.0.1",
		"HostKey " + filepath.Join(dir, "host_key"),
		"PidFile " + filepath.Join(dir, "sshd.pid"),
		"AuthorizedKeysFile " + filepath.Join(dir, "authorized_keys"),
		"AllowUsers " + login,
		"PermitRootLogin prohibit-password",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"StrictModes no",
		"UsePAM no",
		"LogLevel VERBOSE",
		"",
	}, "\n"))
	hostPub, _ := os.ReadFile(filepath.Join(dir, "host_key.pub"))
	writeFile(t, filepath.Join(dir, "known_hosts"), "[127.0.0.1]:"+strconv.Itoa(port)+" "+string(hostPub))
	writeFile(t, filepath.Join(dir, "ssh_config"), strings.Join([]string{
		"Host coder.dev",
		"  HostName 127.0.0.1",
		"  Port " + strconv.Itoa(port),
		"  User " + login,
		"  IdentityFile " + filepath.Join(dir, "client_key"),
		"  IdentitiesOnly yes",
		"  UserKnownHostsFile " + filepath.Join(dir, "known_hosts"),
		"  StrictHostKeyChecking yes",
		"  BatchMode yes",
		"",
	}, "\n"))
	logf, err := os.Create(filepath.Join(dir, "sshd.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "-D", "-e", "-f", filepath.Join(dir, "sshd_config"))
	cmd.Stderr = logf
	child, err := reaper.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(child.Pid, syscall.SIGTERM)
		<-child.Done()
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "sshd.log"))
			t.Logf("sshd log:\n%s", b)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-child.Done():
			b, _ := os.ReadFile(filepath.Join(dir, "sshd.log"))
			t.Fatalf("sshd exited: %v\n%s", child.Exit(), b)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("sshd does not listen on %d", port)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return filepath.Join(dir, "ssh_config")
}

func TestGitPushOverSSH(t *testing.T) {
	sshConfig := sshd(t)
	if strings.ContainsAny(sshConfig, "'\" \\") {
		t.Fatalf("temp path %q cannot go in GIT_SSH_COMMAND", sshConfig)
	}
	ssh := []string{"GIT_SSH_COMMAND=ssh -F '" + sshConfig + "'"}
	a, work, repo := pushAgent(t)

	// The remote exactly as `slotagent git-remote` prints it.
	var remote string
	for _, line := range strings.Split(a.mustCLI("git-remote", "a"), "\n") {
		if r, ok := strings.CutPrefix(strings.TrimSpace(line), "git remote add slot-a "); ok {
			remote = r
		}
	}
	if remote != "coder.dev:"+repo {
		t.Fatalf("remote %q", remote)
	}
	gitRun(t, work, "remote", "add", "slot-a", remote)
	out, ok := gitPush(t, work, ssh, "slot-a", "main")
	if !ok || !strings.Contains(out, "remote: ") || !strings.Contains(out, "==> health") || !strings.Contains(out, "slotagent: slot a serves ") {
		t.Fatalf("push over ssh:\n%s\nagent:\n%s", out, a.stderr())
	}
	if _, b := body(t, a.url("a", "/")); b != "hello v1 1m" {
		t.Fatalf("after the ssh push: %q", b)
	}

	// ssh:// URL, and a failed deploy rejected over ssh.
	setVersion(t, work, "v2")
	v2 := commit(t, work, "v2")
	if out, ok := gitPush(t, work, ssh, "ssh://coder.dev"+repo, "main"); !ok || !strings.Contains(out, "reused node_modules") {
		t.Fatalf("push over ssh://:\n%s", out)
	}
	writeFile(t, filepath.Join(work, "server.js"), "process.exit(5)\n")
	commit(t, work, "broken")
	if out, ok := gitPush(t, work, ssh, "ssh://coder.dev"+repo, "main"); ok || !strings.Contains(out, "remote: slotagent: push refused: deploy") || !strings.Contains(out, "pre-receive hook declined") {
		t.Fatalf("broken push over ssh://:\n%s", out)
	}
	if _, b := body(t, a.url("a", "/")); b != "hello v2 1m" || refOf(t, repo, "refs/heads/main") != v2 {
		t.Fatalf("after the rejected ssh push: %q, ref %s", b, refOf(t, repo, "refs/heads/main"))
	}
	if rec := a.deploys()[0]; rec.Trigger != deploy.TriggerGitPush || rec.Status != deploy.Failed {
		t.Fatalf("record: %+v", rec)
	}
	if log, _ := os.ReadFile(filepath.Join(filepath.Dir(sshConfig), "sshd.log")); strings.Count(string(log), "Accepted publickey for ") != 3 {
		t.Fatalf("the pushes did not all log in through sshd:\n%s", log)
	}
}

// killWhenState kills the agent with SIGKILL as soon as its state file,
// written anew, satisfies cond (watched with inotify, so the kill follows
// the write within microseconds); the channel closes once it did, or the
// test ended first.
func (a *agent) killWhenState(cond func(*state.State) bool) <-chan struct{} {
	a.t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		a.t.Fatal(err)
	}
	if _, err := unix.InotifyAddWatch(fd, a.dataDir, unix.IN_MOVED_TO|unix.IN_CLOSE_WRITE); err != nil {
		unix.Close(fd)
		a.t.Fatal(err)
	}
	pid, path, done := a.child.Pid, filepath.Join(a.dataDir, "state.json"), make(chan struct{})
	ctx := a.t.Context()
	go func() {
		defer close(done)
		defer unix.Close(fd)
		buf := make([]byte, 64<<10)
		for ctx.Err() == nil {
			if n, _ := unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 100); n <= 0 {
				continue
			}
			if _, err := unix.Read(fd, buf); err != nil {
				continue
			}
			if st, err := state.Load(path); err == nil && cond(st) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
				return
			}
		}
	}()
	return done
}

// TestKill9BetweenPreparedAndCommitLetsTheBranchDecide: the agent dies
// just after it switched slot a to a push's release in the
// reference-transaction hook's prepared state, before git moved the
// branch; its death fails the hook, so git aborts the update. The next
// agent lets the branch decide, as the aborted path does: the release
// from before the push serves. The kill races the agent's answer to git:
// when the agent answered first (a loaded machine), git moved the branch
// and the next agent must serve the push (the other way the branch
// decides); the test then tries again with a new commit.
func TestKill9BetweenPreparedAndCommitLetsTheBranchDecide(t *testing.T) {
	a, work, repo := pushAgent(t)
	if out, ok := gitPush(t, work, nil, repo, "main"); !ok {
		t.Fatalf("first push:\n%s\nagent:\n%s", out, a.stderr())
	}
	serving := "v1"
	for attempt := 2; ; attempt++ {
		if attempt > 6 {
			t.Fatalf("the agent answered git before it died in all %d attempts: the test shows nothing", attempt-2)
		}
		base := gitRun(t, work, "rev-parse", "HEAD")
		before := a.processes().Processes[1].Release
		version := fmt.Sprintf("v%d", attempt)
		setVersion(t, work, version)
		pushed := commit(t, work, version)
		killed := a.killWhenState(func(st *state.State) bool {
			ss := st.Slots["a"]
			return ss != nil && ss.Current != before
		})
		out, ok := gitPush(t, work, nil, repo, "main")
		<-killed
		a.wait(10 * time.Second)
		a.start(append(fastDeploys, "CODER_WORKSPACE_NAME=dev")...)
		if main := refOf(t, repo, "refs/heads/main"); ok || main != base {
			// Git moved the branch: the push's release serves.
			if main != pushed {
				t.Fatalf("push %s: ok %v, main at %s\n%s", version, ok, main, out)
			}
			getUntil(t, a.url("a", "/"), "hello "+version+" 1m", 20*time.Second)
			serving = version
			t.Logf("attempt %d: the agent answered git before it died; the next agent serves the push", attempt-1)
			continue
		}
		getUntil(t, a.url("a", "/"), "hello "+serving+" 1m", 20*time.Second)
		if now := a.processes().Processes[1].Release; now != before {
			t.Fatalf("slot a serves release %s, want %s (before the push)", now, before)
		}
		st, err := state.Load(filepath.Join(a.dataDir, "state.json"))
		if err != nil {
			t.Fatal(err)
		}
		ss := st.Slots["a"]
		if ss.Push != nil || ss.Current != before || slices.ContainsFunc(ss.Releases, func(r state.Release) bool { return r.Commit == pushed }) {
			t.Fatalf("state of slot a: %+v", ss)
		}
		if rec := a.deploys()[0]; rec.Commit != pushed || rec.Status != deploy.Failed || !strings.Contains(rec.Error, "the agent stopped before git moved branch main") {
			t.Fatalf("record of the push: %+v", rec)
		}
		if dirs, _ := os.ReadDir(filepath.Join(a.dataDir, "slots", "a", "releases")); len(dirs) != len(ss.Releases) {
			t.Fatalf("release folders %v for releases %+v", dirs, ss.Releases)
		}
		// Nothing is stuck: the same push goes through now.
		if out, ok := gitPush(t, work, nil, repo, "main"); !ok {
			t.Fatalf("push after the restart:\n%s\nagent:\n%s", out, a.stderr())
		}
		getUntil(t, a.url("a", "/"), "hello "+version+" 1m", 20*time.Second)
		return
	}
}
