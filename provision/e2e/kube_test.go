//go:build e2e

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
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
// release, a stop and an immediate start while an app drains (never two
// pods at once), a delete that leaves neither Deployment nor PVC, and the
// faults. Docker builds the image and is stopped before the cluster starts.
func TestKubernetesWorkspace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Minute)
	defer cancel()
	w := newWorld(t)
	var figs figures
	kubeBin := w.kubeBinaries(ctx, t)
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
	tpl, cfg, tmpl := w.slotprovTemplate(ctx, t, kubeTemplate, "template-kube", fmt.Sprintf(`app_host: "*.coder.localhost:%d"
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
  termination_grace_seconds: %d
shutdown_timeout_seconds: %d
`, w.port, workspaceImage, kubeNamespace, kubeStorageClass, k.kubeconfig, kubeShutdownSeconds+15, kubeShutdownSeconds), &figs)

	// A workspace: the build (which waits for the pod), the agent ready,
	// all six apps healthy.
	start = time.Now()
	ws := w.createWorkspace(ctx, t, tmpl, workspaceName)
	figs.add("create → build done (pod available)", time.Since(start))
	firstPod := k.followPodLog(ctx, t, w, ws.ID)
	w.waitHealthy(ctx, t, ws.ID)
	figs.add("create → agent ready, six apps healthy", time.Since(start))
	w.checkProxied(ctx, t)
	repo := gitDaemon(ctx, t, w.tmp)
	rec, appBody := w.deployApp(ctx, t, repo, &figs)

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
	var secondPod string
	w.startServing(ctx, t, ws.ID, appBody, rec.Release, &figs, func() {
		if secondPod = k.followPodLog(ctx, t, w, ws.ID); secondPod == firstPod {
			t.Fatalf("the start reused pod %s", firstPod)
		}
	})

	// Stop, then start at once, while an app takes its whole grace to
	// stop: the start's pod waits for the stopped one to end, so two pods
	// never share the home volume and the host ports.
	k.stopThenStart(ctx, t, w, ws.ID, secondPod, repo, appBody, &figs)

	// Delete: neither the Deployment nor the home PVC is left.
	start = time.Now()
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

// kubeShutdownSeconds is slotagent's stop budget in the Kubernetes
// workspace: long enough that a stop which drains a held request (a
// quarter of it) and then waits out an app that ignores SIGTERM (its
// kill_timeout, 10 s), 50 s in all, outlasts the stop's build and the
// start's up to its Deployment update (44 s seen under a load of 16).
const kubeShutdownSeconds = 160

// stopThenStart deploys into slot b an app that takes its whole grace to
// stop, holds a request to it open (a stop drains it first), stops the
// workspace and starts it the moment the stop build is done. It checks
// that the start changed the Deployment while the stopped pod was still
// running (else it would prove nothing), and, from the apiserver's ordered
// stream of the workspace's pod events, that the new pod was made only
// after the old one had ended: never two live pods on one home volume and
// one set of host ports. Both apps serve again after the start.
func (k *kubeCluster) stopThenStart(ctx context.Context, t *testing.T, w *world, id uuid.UUID, pod, repo, appBody string, figs *figures) {
	t.Helper()
	w.deploy(ctx, t, "b", repo, slowStopBranch)
	slowBody := w.mustGet(ctx, t, "slot-b", "/", http.StatusOK)
	if !strings.Contains(slowBody, "e2e-app slow-stop slot=b") {
		t.Fatalf("slot b does not serve the slow-stop app:\n%.400s", slowBody)
	}
	// The pod is on the node's network: slot b's port is this host's.
	hold, err := net.Dial("tcp", "127.0.0.1:3002")
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	if _, err := hold.Write([]byte("GET /hold HTTP/1.1\r\nHost: slot-b\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	events := k.watchPods(t, w, id)

	start := time.Now()
	w.transition(ctx, t, id, codersdk.WorkspaceTransitionStop)
	figs.add("slow stop: stop (build done)", time.Since(start))
	generation := k.deploymentGeneration(ctx, t, id)
	b, err := w.client.CreateWorkspaceBuild(ctx, id, codersdk.CreateWorkspaceBuildRequest{Transition: codersdk.WorkspaceTransitionStart})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	// The start's new pod template reaches the Deployment: the old pod
	// must still be running then, or the race was never run.
	err = waitFor(ctx, 3*time.Minute, 100*time.Millisecond, "the start's Deployment update", func() error {
		if g := k.deploymentGeneration(ctx, t, id); g == generation {
			return fmt.Errorf("generation still %s", g)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	phase, _ := k.kubectl(ctx, nil, "-n", kubeNamespace, "get", "pod", pod, "-o", "jsonpath={.status.phase}")
	figs.add("slow stop: stop → the start updates the Deployment", time.Since(start))
	if phase != "Running" {
		t.Fatalf("pod %s was %q when the start updated the Deployment: it ended before, and the test proves nothing (hold the stop longer)", pod, phase)
	}
	w.waitBuild(ctx, t, b.ID)
	// hashicorp/kubernetes 1.13.4 ends wait_for_rollout at once when the
	// controller has not yet seen the update (2.x waits): the start build
	// may end before its pod exists. Said, not asserted (a race).
	if out, err := k.kubectl(ctx, nil, "-n", kubeNamespace, "get", "pod", pod, "-o", "name"); err == nil && strings.TrimSpace(out) != "" {
		t.Logf("the start build ended while pod %s was still there", pod)
	}
	newPod := k.followPodLog(ctx, t, w, id)
	w.waitServing(ctx, t, "slot-a", appBody)
	w.waitServing(ctx, t, "slot-b", slowBody)
	figs.add("slow stop: stop → both apps serving again", time.Since(start))

	events.overlap(t, pod, newPod)
}

// deploymentGeneration is the generation of the workspace's Deployment:
// every change of its spec (a build's new pod template) increments it.
func (k *kubeCluster) deploymentGeneration(ctx context.Context, t *testing.T, id uuid.UUID) string {
	t.Helper()
	out, err := k.kubectl(ctx, nil, "-n", kubeNamespace, "get", "deployments", "-l", workspaceSelector(id), "-o", "jsonpath={.items[*].metadata.generation}")
	if err != nil || len(strings.Fields(out)) != 1 {
		t.Fatalf("the workspace's Deployment: %q %v", out, err)
	}
	return strings.TrimSpace(out)
}

// podEvents is `kubectl get pods --watch` of one workspace: the
// apiserver's events, in its order, written to a file.
type podEvents struct {
	d    *daemon
	file string
}

// watchPods starts following the workspace's pod events.
func (k *kubeCluster) watchPods(t *testing.T, w *world, id uuid.UUID) *podEvents {
	t.Helper()
	e := &podEvents{file: filepath.Join(w.tmp, "pod-events-"+strconv.FormatInt(time.Now().UnixNano(), 10)+".json")}
	f, err := os.Create(e.file)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	e.d, err = startDaemon(filepath.Join(k.bin, "kubectl"), e.file, nil, nil, "--kubeconfig", k.kubeconfig, "-n", kubeNamespace,
		"get", "pods", "-l", workspaceSelector(id), "--watch", "--output-watch-events", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.d.stop(syscall.SIGTERM, 5*time.Second) })
	return e
}

// overlap reads the events up to newPod's creation and fails the test
// unless, when newPod was added, no other pod was alive (alive: not
// deleted, phase neither Succeeded nor Failed) and oldPod had been seen.
func (e *podEvents) overlap(t *testing.T, oldPod, newPod string) {
	t.Helper()
	// The stream's events are read as they are: wait for newPod's ADDED.
	var seen []string
	err := waitFor(context.Background(), 30*time.Second, 100*time.Millisecond, "pod "+newPod+" in the watch", func() error {
		seen = nil
		live, sawOld := map[string]bool{}, false
		f, err := os.Open(e.file)
		if err != nil {
			return err
		}
		defer f.Close()
		dec := json.NewDecoder(f)
		for {
			var ev struct {
				Type   string `json:"type"`
				Object struct {
					Metadata struct {
						Name string `json:"name"`
					} `json:"metadata"`
					Status struct {
						Phase string `json:"phase"`
					} `json:"status"`
				} `json:"object"`
			}
			if err := dec.Decode(&ev); err != nil {
				return fmt.Errorf("no ADDED event of %s yet (%v) in %v", newPod, err, seen)
			}
			name, phase := ev.Object.Metadata.Name, ev.Object.Status.Phase
			seen = append(seen, ev.Type+" "+name+" "+phase)
			alive := ev.Type != "DELETED" && phase != "Succeeded" && phase != "Failed"
			if name == oldPod {
				sawOld = true
			}
			if ev.Type == "ADDED" && name == newPod {
				delete(live, newPod)
				if !sawOld {
					t.Fatalf("the watch never saw pod %s before %s:\n%s", oldPod, newPod, strings.Join(seen, "\n"))
				}
				if len(live) > 0 {
					t.Fatalf("pod %s was made while %v still ran: two pods on one home volume and one set of host ports\n%s", newPod, live, strings.Join(seen, "\n"))
				}
				return nil
			}
			if alive {
				live[name] = true
			} else {
				delete(live, name)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the workspace's pod events, in the apiserver's order:\n%s", strings.Join(seen, "\n"))
}

// kubeBinaries is the folder of the cluster's programs, built when the
// cache has none of this version.
func (w *world) kubeBinaries(ctx context.Context, t *testing.T) string {
	var bin string
	step(t, "kubernetes binaries", func() (err error) {
		bin, err = kubeBinaries(ctx, w.root, w.cache)
		return err
	})
	return bin
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
		mustRun(ctx, t, env, w.slotprov(), "render", "-c", cfg, "-o", dir)
		mustRun(ctx, t, append(env, w.coderEnv()...), w.slotprov(), "push", dir, "-c", cfg, "--name", "kube-"+f.name, "--activate")
		tmpl := w.template(ctx, t, "kube-"+f.name)
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
			"--field-selector", "status.phase=Running", "-o", "json")
		if err != nil {
			return err
		}
		var pods struct {
			Items []struct {
				Metadata struct {
					Name              string     `json:"name"`
					DeletionTimestamp *time.Time `json:"deletionTimestamp"`
				} `json:"metadata"`
			} `json:"items"`
		}
		if err := json.Unmarshal([]byte(out), &pods); err != nil {
			return err
		}
		// A terminating pod is still Running: not the one a start made.
		var names []string
		for _, p := range pods.Items {
			if p.Metadata.DeletionTimestamp == nil {
				names = append(names, p.Metadata.Name)
			}
		}
		if len(names) != 1 {
			return fmt.Errorf("running pods not terminating: %q", names)
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
// cgroup of kubelet's, its fixed folders gone when it made them. It first
// leaves a running cluster behind, as a killed run does, and the next
// start must tear that one down.
func TestKubernetesCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	w := newWorld(t)
	kubeBin := w.kubeBinaries(ctx, t)
	dir := filepath.Join(w.cache, kubeStateDir)
	// What an earlier killed run left goes before the host is looked at.
	if err := teardownKube(dir); err != nil {
		t.Fatalf("an earlier run's leftovers: %v", err)
	}
	before := hostSnapshot(t)

	// A run that never tears down: its cluster and pod keep running.
	abandoned := func() {
		k, err := startKube(ctx, kubeBin, w.cache, t.Logf)
		if err != nil {
			t.Fatal(err)
		}
		stopOnSignal(t, k)
		k.sandboxPod(ctx, t)
	}
	step(t, "a cluster left running, as by a killed run", func() error {
		abandoned()
		if len(processesNaming(dir)) == 0 {
			return errors.New("no process of the cluster names its folder: the teardown would find nothing")
		}
		return nil
	})
	var k *kubeCluster
	step(t, "kubernetes cluster over the leftovers", func() (err error) {
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
	k.sandboxPod(ctx, t)
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

// sandboxPod runs a hostNetwork pod of the sandbox image and waits for it
// to be Ready.
func (k *kubeCluster) sandboxPod(ctx context.Context, t *testing.T) {
	t.Helper()
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
