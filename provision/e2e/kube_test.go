//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/coder/coder/v2/codersdk"
)

// The Kubernetes workspace's namespace, storage class and home volume.
const (
	kubeNamespace    = "coder-slots-e2e"
	kubeStorageClass = "e2e-local"
	kubeTemplate     = "coder-slots-e2e-kube"
)

// TestKubernetesWorkspace is TestCoderWorkspace on a one-node Kubernetes
// built here: the same template rendered for target kubernetes, pushed to
// a real Coder, a workspace created, the apps healthy, a deploy, a clean
// stop (the pod ends within its grace), a start on the same volume and
// release, and a delete that leaves neither Deployment nor PVC. Docker
// builds the image and is stopped before the cluster starts.
func TestKubernetesWorkspace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	w := newWorld(t)
	var figs figures

	var kubeBin string
	step(t, "kubernetes binaries", func() (err error) {
		kubeBin, err = kubeBinaries(ctx, w.root, w.cache)
		return err
	})
	w.dockerAndImage(ctx, t)
	var archive, imageID string
	step(t, "workspace image saved", func() (err error) {
		archive, imageID, err = w.docker.saveImage(ctx, workspaceImage, w.cache)
		return err
	})
	// One engine at a time on this machine: Docker's is done.
	w.docker.stop()
	w.docker = nil

	var k *kubeCluster
	start := time.Now()
	step(t, "kubernetes cluster", func() (err error) {
		k, err = startKube(ctx, kubeBin, w.cache, t.Logf)
		return err
	})
	figs.add("cluster up (containerd, etcd, control plane, kubelet: node Ready)", time.Since(start))
	t.Cleanup(k.stop)
	stopOnSignal(t, k)
	step(t, "workspace image in the node's containerd", func() error {
		return k.importImage(ctx, workspaceImage, imageID, archive)
	})
	step(t, "namespace, storage class and home volumes", func() error { return k.machineObjects(ctx, t) })
	w.coderServer(ctx, t)

	// Render for the cluster: the pod on the node's network (it reaches
	// Coder on loopback), the image loaded on the node, the provisioner's
	// kubeconfig; validate with the real Terraform; push with slotprov.
	tpl := filepath.Join(w.tmp, "template-kube")
	cfg := filepath.Join(w.tmp, "slots-kube.yaml")
	writeFile(t, cfg, fmt.Sprintf(`app_host: "*.coder.localhost:%d"
app_url_style: short
target: kubernetes
image:
  ref: %s
kubernetes:
  namespace: %s
  storage_class: %s
  home_size: 1Gi
  host_network: true
  image_pull_policy: IfNotPresent
  config_path: %s
  start_timeout_seconds: 120
`, w.port, workspaceImage, kubeNamespace, kubeStorageClass, k.kubeconfig))
	slotprov := filepath.Join(w.root, "bin", "slotprov")
	rc := filepath.Join(w.root, ".cache", "tf-mirror", "terraformrc")
	mustRun(ctx, t, nil, slotprov, "render", "-c", cfg, "-o", tpl)
	mustRun(ctx, t, nil, slotprov, "validate", tpl, "--terraform-config", rc)
	coderEnv := []string{"CODER_URL=" + w.url, "CODER_SESSION_TOKEN=" + w.token}
	start = time.Now()
	mustRun(ctx, t, coderEnv, slotprov, "push", tpl, "-c", cfg, "--name", kubeTemplate, "--activate")
	figs.add("slotprov push → template active", time.Since(start))
	org, err := w.client.OrganizationByName(ctx, codersdk.DefaultOrganization)
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := w.client.TemplateByName(ctx, org.ID, kubeTemplate)
	if err != nil {
		t.Fatalf("the template slotprov pushed: %v", err)
	}

	// A workspace: the build (which waits for the pod), the agent ready,
	// all six apps healthy.
	start = time.Now()
	ws, err := w.client.CreateUserWorkspace(ctx, codersdk.Me, codersdk.CreateWorkspaceRequest{TemplateID: tmpl.ID, Name: workspaceName})
	if err != nil {
		t.Fatalf("create workspace: %v", err)
	}
	deleted := false
	t.Cleanup(func() {
		if !deleted {
			w.deleteWorkspace(t, ws.ID)
		}
	})
	w.waitBuild(ctx, t, ws.LatestBuild.ID)
	figs.add("create → build done (pod available)", time.Since(start))
	firstPod := k.followPodLog(ctx, t, w, ws.ID)
	w.waitHealthy(ctx, t, ws.ID)
	figs.add("create → agent ready, six apps healthy", time.Since(start))

	// The panel and a placeholder through Coder's subdomain proxy.
	if body := w.mustGet(ctx, t, "admin", "/", http.StatusOK); !strings.Contains(body, "slot-b") && !strings.Contains(body, "Slot B") {
		t.Fatalf("the panel through Coder does not list the slots:\n%.400s", body)
	}
	if body := w.mustGet(ctx, t, "slot-b", "/", http.StatusOK); !strings.Contains(body, "admin--"+workspaceName+"--"+owner) {
		t.Fatalf("slot b's placeholder through Coder does not link the panel's URL:\n%.400s", body)
	}

	// A real app deployed through the agent's API behind Coder's proxy.
	repo := gitDaemon(ctx, t, w.tmp)
	start = time.Now()
	rec := w.deploy(ctx, t, repo)
	figs.add("deploy (git fetch, npm ci, health gate, cutover)", time.Since(start))
	appBody := w.mustGet(ctx, t, "slot-a", "/", http.StatusOK)
	if !strings.Contains(appBody, "e2e-app is-number=true slot=a") {
		t.Fatalf("slot a through Coder does not serve the app:\n%.400s", appBody)
	}
	if got := w.currentRelease(ctx, t, "a"); got != rec.Release {
		t.Fatalf("slot a serves release %q, the deploy made %q", got, rec.Release)
	}

	// Stop: the pod gets its SIGTERM and grace, slotagent stops cleanly and
	// leaves nothing running in its state on the volume.
	pv := k.homeDir(ctx, t, ws.ID)
	start = time.Now()
	w.transition(ctx, t, ws.ID, codersdk.WorkspaceTransitionStop)
	figs.add("stop (build done)", time.Since(start))
	k.waitNoPod(ctx, t, ws.ID)
	figs.add("stop → pod gone", time.Since(start))
	k.waitLogEnd(t)
	w.checkCleanStop(t, pv)

	// Start: a new pod on the same volume serves the same release.
	start = time.Now()
	w.transition(ctx, t, ws.ID, codersdk.WorkspaceTransitionStart)
	secondPod := k.followPodLog(ctx, t, w, ws.ID)
	if secondPod == firstPod {
		t.Fatalf("the start reused pod %s", firstPod)
	}
	w.waitServing(ctx, t, "slot-a", appBody)
	figs.add("start → app serving through Coder", time.Since(start))
	if got := w.currentRelease(ctx, t, "a"); got != rec.Release {
		t.Fatalf("after the restart slot a serves %q, before it served %q", got, rec.Release)
	}

	// Delete: neither the Deployment nor the home PVC is left.
	start = time.Now()
	deleted = true
	w.deleteWorkspace(t, ws.ID)
	figs.add("delete (build done)", time.Since(start))
	if out, err := k.kubectl(ctx, nil, "-n", kubeNamespace, "get", "deployments,persistentvolumeclaims", "-o", "name"); err != nil || strings.TrimSpace(out) != "" {
		t.Fatalf("after the delete the namespace still has %q (%v)", out, err)
	}
	k.waitNoPod(ctx, t, ws.ID)

	// Faults: each fails the build with a clear line within a bounded
	// time, and the delete leaves nothing.
	k.faults(ctx, t, w, tpl, cfg, &figs)

	header := fmt.Sprintf("a real Coder %s server and Kubernetes %s (containerd %s) on this machine", w.coderVersion(ctx), k.version(ctx), containerdVersion(ctx))
	t.Logf("make e2e figures (Kubernetes), %s:\n%s", header, figs.table())
}

// saveImage writes `docker save` of ref into the cache, once per image ID,
// and returns the archive and the ID.
func (e *dockerEngine) saveImage(ctx context.Context, ref, cache string) (string, string, error) {
	out, err := e.docker(ctx, nil, "image", "inspect", "--format", "{{.Id}}", ref)
	if err != nil {
		return "", "", err
	}
	id := strings.TrimSpace(out)
	archive := filepath.Join(cache, "workspace-image-"+strings.TrimPrefix(id, "sha256:")[:16]+".tar")
	if _, err := os.Stat(archive); err == nil {
		return archive, id, nil
	}
	old, _ := filepath.Glob(filepath.Join(cache, "workspace-image-*.tar"))
	for _, o := range old {
		os.Remove(o)
	}
	if _, err := e.docker(ctx, nil, "save", "-o", archive+".tmp", ref); err != nil {
		return "", "", err
	}
	return archive, id, os.Rename(archive+".tmp", archive)
}

// stopOnSignal stops the cluster and exits when the test is interrupted:
// what kubelet changed on the host is put back even then.
func stopOnSignal(t *testing.T, k *kubeCluster) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sig:
			fmt.Fprintf(os.Stderr, "e2e: %s: stopping the cluster\n", s)
			k.stop()
			os.Exit(1)
		case <-done:
		}
	}()
	t.Cleanup(func() {
		signal.Stop(sig)
		close(done)
	})
}

// kubeHomeVolumes are the hostPath volumes the test makes: the workspace
// binds one, the fault with a missing image the other; then none is left,
// which the fault with a volume that never binds needs.
var kubeHomeVolumes = []string{"e2e-home-1", "e2e-home-2"}

// machineObjects makes what this machine's cluster needs and a real one
// has already: the namespace, a storage class that binds on first use and
// hostPath volumes for it whose folders uid 1000 (the image's coder) owns
// (fsGroup does not apply to hostPath).
func (k *kubeCluster) machineObjects(ctx context.Context, t *testing.T) error {
	objects := fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: %[1]s}
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: %[2]s}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
`, kubeNamespace, kubeStorageClass)
	for _, name := range kubeHomeVolumes {
		dir := k.path("pv", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		if err := os.Chown(dir, 1000, 1000); err != nil {
			return err
		}
		objects += fmt.Sprintf(`---
apiVersion: v1
kind: PersistentVolume
metadata: {name: %s}
spec:
  capacity: {storage: 20Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: %s
  hostPath: {path: %q, type: Directory}
`, name, kubeStorageClass, dir)
	}
	t.Logf("machine-specific step (a real cluster has its own namespace and storage):\n%s", objects)
	if _, err := k.kubectl(ctx, strings.NewReader(objects), "apply", "-f", "-"); err != nil {
		return err
	}
	return waitFor(ctx, time.Minute, 200*time.Millisecond, "the namespace's default service account", func() error {
		_, err := k.kubectl(ctx, nil, "-n", kubeNamespace, "get", "serviceaccount", "default")
		return err
	})
}

// homeDir is the folder of the volume the workspace's home PVC is bound to.
func (k *kubeCluster) homeDir(ctx context.Context, t *testing.T, id uuid.UUID) string {
	t.Helper()
	out, err := k.kubectl(ctx, nil, "-n", kubeNamespace, "get", "pvc", "-l", "com.coder.workspace.id="+id.String(), "-o", "jsonpath={.items[*].spec.volumeName}")
	if err != nil || len(strings.Fields(out)) != 1 {
		t.Fatalf("the workspace's home PVC: %q %v", out, err)
	}
	dir, err := k.kubectl(ctx, nil, "get", "pv", strings.TrimSpace(out), "-o", "jsonpath={.spec.hostPath.path}")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(dir)
}

// faults pushes templates that cannot work on this cluster and checks that
// each workspace build fails within its bounded time with a line that
// says why, and that deleting the workspace leaves no Deployment and no
// PVC. The settings differ from cfg by slotprov's environment.
func (k *kubeCluster) faults(ctx context.Context, t *testing.T, w *world, tpl, cfg string, figs *figures) {
	slotprov := filepath.Join(w.root, "bin", "slotprov")
	coderEnv := []string{"CODER_URL=" + w.url, "CODER_SESSION_TOKEN=" + w.token}
	org, err := w.client.OrganizationByName(ctx, codersdk.DefaultOrganization)
	if err != nil {
		t.Fatal(err)
	}
	const deadline = 15
	for _, f := range []struct {
		name string
		env  []string
		want string
	}{
		// The second volume binds; the image is nowhere to be pulled.
		{"missing-image", []string{"SLOTPROV_IMAGE_REF=coder-slots/missing:e2e"}, "Deployment exceeded its progress deadline"},
		// Both volumes are taken now: the claim never binds.
		{"unbound-volume", nil, "Deployment exceeded its progress deadline"},
		{"missing-namespace", []string{"SLOTPROV_KUBERNETES_NAMESPACE=absent"}, `namespaces "absent" not found`},
		{"unreachable-cluster", []string{"SLOTPROV_KUBERNETES_CONFIG_PATH=" + k.unreachableKubeconfig(t)}, "connection refused"},
	} {
		env := append([]string{"SLOTPROV_KUBERNETES_START_TIMEOUT_SECONDS=" + strconv.Itoa(deadline)}, f.env...)
		dir := tpl + "-" + f.name
		mustRun(ctx, t, env, slotprov, "render", "-c", cfg, "-o", dir)
		mustRun(ctx, t, append(env, coderEnv...), slotprov, "push", dir, "-c", cfg, "--name", "kube-"+f.name, "--activate")
		tmpl, err := w.client.TemplateByName(ctx, org.ID, "kube-"+f.name)
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		ws, err := w.client.CreateUserWorkspace(ctx, codersdk.Me, codersdk.CreateWorkspaceRequest{TemplateID: tmpl.ID, Name: f.name})
		if err != nil {
			t.Fatalf("%s: create workspace: %v", f.name, err)
		}
		b := w.finishBuild(ctx, t, ws.LatestBuild.ID)
		took := time.Since(start)
		log := w.buildLog(ctx, b.ID)
		if b.Job.Status != codersdk.ProvisionerJobFailed || !strings.Contains(b.Job.Error+log, f.want) {
			t.Fatalf("%s: the build %s (%s), want a failure saying %q:\n%s", f.name, b.Job.Status, b.Job.Error, f.want, log)
		}
		if took > (deadline+120)*time.Second {
			t.Errorf("%s: the build took %s to fail", f.name, took)
		}
		figs.add("fault "+f.name+": create → build failed", took)
		t.Logf("%s: the build failed after %s: %s", f.name, took.Round(time.Second), oneLine(b.Job.Error))
		w.deleteWorkspace(t, ws.ID)
		out, err := k.kubectl(ctx, nil, "get", "deployments,persistentvolumeclaims", "--all-namespaces", "-l", workspaceSelector(ws.ID), "-o", "name")
		if err != nil || strings.TrimSpace(out) != "" {
			t.Fatalf("%s: after the delete %q is left (%v)", f.name, out, err)
		}
		k.waitNoPod(ctx, t, ws.ID)
	}
}

// unreachableKubeconfig is a kubeconfig for a cluster that is not there.
func (k *kubeCluster) unreachableKubeconfig(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "unreachable.kubeconfig")
	writeFile(t, path, "apiVersion: v1\nkind: Config\nclusters: [{name: gone, cluster: {server: \"https://127.0.0.1:1\", insecure-skip-tls-verify: true}}]\nusers: [{name: gone, user: {token: none}}]\ncontexts: [{name: gone, context: {cluster: gone, user: gone}}]\ncurrent-context: gone\n")
	return path
}

// oneLine joins a multi-line message.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// workspaceSelector selects the workspace's pods by the template's label.
func workspaceSelector(id uuid.UUID) string { return "com.coder.workspace.id=" + id.String() }

// followPodLog waits for the workspace's pod to run, copies its output
// (slotagent's log) into a file until the pod ends, and returns the pod's
// name; the stop check reads the file.
func (k *kubeCluster) followPodLog(ctx context.Context, t *testing.T, w *world, id uuid.UUID) string {
	t.Helper()
	var pod string
	err := waitFor(ctx, 3*time.Minute, 250*time.Millisecond, "the workspace's pod running", func() error {
		out, err := k.kubectl(ctx, nil, "-n", kubeNamespace, "get", "pods", "-l", workspaceSelector(id),
			"--field-selector", "status.phase=Running", "-o", "jsonpath={.items[*].metadata.name}")
		if err != nil {
			return err
		}
		names := strings.Fields(out)
		if len(names) != 1 {
			return fmt.Errorf("running pods: %q", out)
		}
		pod = names[0]
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	w.containerLog = filepath.Join(w.tmp, "pod-"+strconv.FormatInt(time.Now().UnixNano(), 10)+".log")
	k.podLog, err = startDaemon(filepath.Join(k.bin, "kubectl"), w.containerLog, nil, nil,
		"--kubeconfig", k.kubeconfig, "-n", kubeNamespace, "logs", "--follow", "--timestamps", "pod/"+pod)
	if err != nil {
		t.Fatal(err)
	}
	d := k.podLog
	t.Cleanup(func() { d.stop(syscall.SIGTERM, 5*time.Second) })
	return pod
}

// waitLogEnd waits for the followed pod's log to end with the pod.
func (k *kubeCluster) waitLogEnd(t *testing.T) {
	t.Helper()
	select {
	case <-k.podLog.done:
	case <-time.After(30 * time.Second):
		t.Fatal("kubectl logs --follow did not end with the pod")
	}
}

// waitNoPod waits until the workspace has no pod at all (a terminating
// pod still counts).
func (k *kubeCluster) waitNoPod(ctx context.Context, t *testing.T, id uuid.UUID) {
	t.Helper()
	err := waitFor(ctx, time.Minute, 200*time.Millisecond, "the workspace's pod gone", func() error {
		out, err := k.kubectl(ctx, nil, "-n", kubeNamespace, "get", "pods", "-l", workspaceSelector(id), "-o", "name")
		if err == nil && strings.TrimSpace(out) != "" {
			err = fmt.Errorf("pods: %s", strings.TrimSpace(out))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// version is the cluster's Kubernetes version.
func (k *kubeCluster) version(ctx context.Context) string {
	out, err := k.kubectl(ctx, nil, "version", "-o", "json")
	var v struct {
		ServerVersion struct{ GitVersion string } `json:"serverVersion"`
	}
	if err != nil || json.Unmarshal([]byte(out), &v) != nil {
		return "?"
	}
	return v.ServerVersion.GitVersion
}

func containerdVersion(ctx context.Context) string {
	out, err := exec.CommandContext(ctx, "containerd", "--version").Output()
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(out))
	if len(f) < 3 {
		return "?"
	}
	return f[2]
}

// TestKubernetesCluster is the cluster alone: up, a hostNetwork pod of the
// sandbox image running, down — and the host as it was: kubelet's sysctls
// back, no process of the cluster, nothing mounted under its folder, no
// cgroup of kubelet's, its fixed folders gone when it made them.
func TestKubernetesCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	w := newWorld(t)
	var kubeBin string
	step(t, "kubernetes binaries", func() (err error) {
		kubeBin, err = kubeBinaries(ctx, w.root, w.cache)
		return err
	})
	before := hostSnapshot(t)
	var k *kubeCluster
	step(t, "kubernetes cluster", func() (err error) {
		k, err = startKube(ctx, kubeBin, w.cache, t.Logf)
		return err
	})
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			k.stop()
		}
	})
	stopOnSignal(t, k)
	pod := `apiVersion: v1
kind: Pod
metadata: {name: sandbox, namespace: default}
spec:
  hostNetwork: true
  automountServiceAccountToken: false
  containers: [{name: pause, image: ` + pauseImage + `, imagePullPolicy: Never}]
`
	if _, err := k.kubectl(ctx, strings.NewReader(pod), "apply", "-f", "-"); err != nil {
		t.Fatal(err)
	}
	if _, err := k.kubectl(ctx, nil, "wait", "--for=condition=Ready", "pod/sandbox", "--timeout=120s"); err != nil {
		t.Fatal(err)
	}
	if len(processesNaming(k.dir)) == 0 {
		t.Fatal("no process of the cluster names its folder: the teardown would find nothing")
	}
	start := time.Now()
	k.stop()
	stopped = true
	t.Logf("cluster down in %s", time.Since(start).Round(time.Millisecond))
	if left := processesNaming(k.dir); len(left) > 0 {
		t.Errorf("processes left: %v", left)
	}
	if after := hostSnapshot(t); after != before {
		t.Errorf("the host changed:\nbefore %s\nafter  %s", before, after)
	}
}

// hostSnapshot is what the cluster may change on the host: kubelet's
// sysctls, its fixed folders, its cgroups, and the mounts under the e2e
// cache.
func hostSnapshot(t *testing.T) string {
	var b strings.Builder
	for _, s := range kubeletSysctls {
		v, err := os.ReadFile(filepath.Join("/proc/sys", s))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s=%s ", s, strings.TrimSpace(string(v)))
	}
	for _, d := range append(kubeletFixedDirs, "/run/containerd/s") {
		_, err := os.Stat(d)
		fmt.Fprintf(&b, "%s:%t ", d, err == nil)
	}
	cgroups, _ := filepath.Glob("/sys/fs/cgroup/*/kubepods")
	fmt.Fprintf(&b, "kubepods cgroups:%d ", len(cgroups))
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	fmt.Fprintf(&b, "mounts under the cache:%d", strings.Count(string(mounts), " "+cacheDir()+"/"))
	return b.String()
}
