package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder-slots/coder-slots/provision/config"
	"github.com/coder-slots/coder-slots/terraform/render"
	"github.com/coder-slots/coder-slots/terraform/tfmirror"
	"github.com/coder-slots/coder-slots/terraform/tfrun"
)

// freePorts returns n ports nothing listens on right now.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// repoRoot is the folder with go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(strings.TrimSpace(string(out)))
}

// TestWorkspaceEndToEnd renders a template for each target, plans
// workspace dev of alice with the real Terraform, starts slotagent with
// exactly the environment the plan gives the container (no agent token, a
// temporary home), and checks what Coder and users will see: every slot's
// placeholder shows the slot's own workspace URL, and the healthcheck URL
// of every coder_app answers 200.
func TestWorkspaceEndToEnd(t *testing.T) {
	rc := tfmirror.Require(t)
	bin := filepath.Join(t.TempDir(), "slotagent")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./agent/cmd/slotagent")
	build.Dir = repoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build slotagent: %v\n%s", err, out)
	}
	for _, target := range []string{config.TargetDocker, config.TargetKubernetes} {
		t.Run(target, func(t *testing.T) { workspaceEndToEnd(t, rc, bin, target) })
	}
}

func workspaceEndToEnd(t *testing.T, rc, bin, target string) {
	ports := freePorts(t, 6)
	var yaml strings.Builder
	fmt.Fprintf(&yaml, "app_host: '*.coder.example.com'\ntarget: %s\nadmin:\n  port: %d\nslots:\n", target, ports[0])
	for i, name := range []string{"a", "b", "c", "d", "e"} {
		fmt.Fprintf(&yaml, "  - name: %s\n    port: %d\n", name, ports[i+1])
	}
	dir := t.TempDir()
	if target == config.TargetKubernetes {
		// The provisioner's kubeconfig must exist; a plan of new resources
		// never reaches the cluster it names.
		kc := filepath.Join(dir, "kubeconfig")
		if err := os.WriteFile(kc, []byte("apiVersion: v1\nkind: Config\nclusters: [{name: none, cluster: {server: \"https://127.0.0.1:1\"}}]\ncontexts: [{name: none, context: {cluster: none}}]\ncurrent-context: none\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&yaml, "kubernetes:\n  config_path: %s\n", kc)
	}
	file := writeConfig(t, dir, yaml.String())
	c, err := config.Load(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	files, err := render.Files(c)
	if err != nil {
		t.Fatal(err)
	}
	tpl := filepath.Join(dir, "template")
	if err := render.Write(tpl, files, false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	plan, err := tfrun.Runner{CLIConfig: rc}.Plan(ctx, tpl, tfrun.Workspace{Name: "dev", Owner: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if plan.Target != target || plan.Container == nil || !slices.Equal(plan.Container.Entrypoint, []string{"slotagent", "run"}) {
		t.Fatalf("target %q, container: %+v", plan.Target, plan.Container)
	}

	// Exactly the container's environment from the plan, less what only the
	// build knows (the agent's token and init script), in a temporary home.
	home := t.TempDir()
	env := []string{"HOME=" + home, "PATH=" + os.Getenv("PATH"), "SLOTAGENT_DATA_DIR=" + filepath.Join(home, "data", "slotagent")}
	for _, name := range plan.EnvNames {
		if v, ok := plan.Env[name]; ok {
			env = append(env, name+"="+v)
		} else if name != "CODER_AGENT_TOKEN" && name != "CODER_AGENT_INIT_SCRIPT" {
			t.Fatalf("%s is unknown at plan time", name)
		}
	}
	agent := exec.Command(bin, "run")
	agent.Env = env
	agent.Dir = home
	logFile, err := os.Create(filepath.Join(t.TempDir(), "slotagent.log"))
	if err != nil {
		t.Fatal(err)
	}
	agent.Stdout, agent.Stderr = logFile, logFile
	if err := agent.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- agent.Wait() }()
	t.Cleanup(func() {
		_ = agent.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			_ = agent.Process.Kill()
			<-exited
		}
		if t.Failed() {
			b, _ := os.ReadFile(logFile.Name())
			t.Logf("slotagent log:\n%s", b)
		}
	})

	client := &http.Client{Timeout: 5 * time.Second}
	get := func(url string) (int, string, error) {
		res, err := client.Get(url)
		if err != nil {
			return 0, "", err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return res.StatusCode, string(b), err
	}
	// Coder's healthcheck of each app, until the agent answers.
	for _, app := range plan.Apps {
		deadline := time.Now().Add(30 * time.Second)
		for {
			code, body, err := get(app.Healthcheck)
			if err == nil && code == http.StatusOK {
				break
			}
			select {
			case err := <-exited:
				t.Fatalf("slotagent exited: %v", err)
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: healthcheck %s: %d %q %v", app.Name, app.Healthcheck, code, body, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	checked := 0
	for _, app := range plan.Apps {
		if app.Name == render.AdminApp {
			continue
		}
		letter := strings.TrimPrefix(app.Name, "slot_")
		wantURL := plan.Env["SLOT_"+strings.ToUpper(letter)+"_URL"]
		if wantURL != app.URL || !strings.HasPrefix(wantURL, "https://slot-"+letter+"--main--dev--alice.") {
			t.Fatalf("%s: env URL %q, app URL %q", app.Name, wantURL, app.URL)
		}
		code, body, err := get(app.Local + "/")
		if err != nil || code != http.StatusOK {
			t.Fatalf("%s: GET %s/: %d %v", app.Name, app.Local, code, err)
		}
		if !strings.Contains(body, wantURL) || !strings.Contains(body, plan.Env["ADMIN_URL"]) {
			t.Fatalf("%s: the placeholder at %s does not show %s and the admin panel's URL:\n%s", app.Name, app.Local, wantURL, body)
		}
		for _, other := range plan.Apps {
			if other.Name != app.Name && other.Name != render.AdminApp && strings.Contains(body, other.URL) {
				t.Fatalf("%s: the placeholder shows %s's URL %s", app.Name, other.Name, other.URL)
			}
		}
		checked++
	}
	if checked != 5 {
		t.Fatalf("checked %d slots", checked)
	}
	// The workspace's name reaches the agent: its git remotes name the
	// ssh host `coder config-ssh` makes for the workspace.
	for _, app := range plan.Apps {
		if app.Name != render.AdminApp {
			continue
		}
		code, body, err := get(app.Local + "/api/slots/a/git-remote")
		var remote struct{ URL string }
		if err == nil {
			err = json.Unmarshal([]byte(body), &remote)
		}
		if err != nil || code != http.StatusOK || remote.URL != "coder.dev:data/slotagent/git/a.git" {
			t.Fatalf("git remote of slot a: %d %v\n%s", code, err, body)
		}
	}
}
