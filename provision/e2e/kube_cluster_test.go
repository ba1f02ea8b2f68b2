//go:build e2e

package e2e

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// The one-node cluster's fixed loopback ports and names. Everything it
// runs binds 127.0.0.1 only.
const (
	kubeAPIPort  = 16443
	etcdPort     = 12379
	kubeNode     = "localhost" // resolves to 127.0.0.1: the apiserver reaches the kubelet by it
	pauseImage   = "registry.k8s.io/pause:3.10"
	kubeletSock  = "containerd.sock"
	kubeStateDir = "kube"
)

// kubeletSysctls are the kernel settings kubelet changes on start; the
// harness puts back what was there.
var kubeletSysctls = []string{"vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops"}

// kubeletFixedDirs are folders kubelet (device plugins, container log
// links) and the CNI library (its cache) make at fixed places whatever
// their state dir; the harness removes the ones they made.
var kubeletFixedDirs = []string{"/var/lib/kubelet", "/var/lib/cni", kubeletContainerLogs}

// kubeletContainerLogs is where kubelet links each container's log, a fixed
// place too; the links into the cluster's folder are removed either way.
const kubeletContainerLogs = "/var/log/containers"

// kubeVersions are the Kubernetes and etcd versions the wrapper module
// pins (provision/e2e/kbuild/go.mod).
func kubeVersions(root string) (kube, etcd string, err error) {
	b, err := os.ReadFile(filepath.Join(root, "provision", "e2e", "kbuild", "go.mod"))
	if err != nil {
		return "", "", fmt.Errorf("kbuild: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		if f[0] == "require" {
			f = f[1:]
		}
		switch f[0] {
		case "k8s.io/kubernetes":
			kube = f[1]
		case "go.etcd.io/etcd/server/v3":
			etcd = f[1]
		}
	}
	if kube == "" || etcd == "" {
		return "", "", errors.New("kbuild/go.mod requires no k8s.io/kubernetes or go.etcd.io/etcd/server/v3")
	}
	return kube, etcd, nil
}

// kubeBinaryNames are the programs the cluster runs, built into one folder.
var kubeBinaryNames = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl", "pause"}

// kubeBinaries builds, once per version, etcd, the control plane, kubelet
// and kubectl from the pinned wrapper module, and Kubernetes' own pause
// program (static, for the sandbox image); it returns their folder.
func kubeBinaries(ctx context.Context, root, cache string) (string, error) {
	kube, etcd, err := kubeVersions(root)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(cache, "kube-"+kube+"-etcd-"+etcd)
	if slices.IndexFunc(kubeBinaryNames, func(n string) bool {
		_, err := os.Stat(filepath.Join(bin, n))
		return err != nil
	}) < 0 {
		return bin, nil
	}
	mod := filepath.Join(root, "provision", "e2e", "kbuild")
	tmp := bin + ".tmp"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", fmt.Errorf("kube binaries: %w", err)
	}
	// What Kubernetes' own build stamps into the binaries (discovery and
	// kubelet report it); no date, so a rebuild is a cache hit.
	major, minor, _ := strings.Cut(strings.TrimPrefix(kube, "v"), ".")
	minor, _, _ = strings.Cut(minor, ".")
	ld := "-s -w"
	for _, p := range []string{"k8s.io/component-base/version", "k8s.io/client-go/pkg/version"} {
		ld += fmt.Sprintf(" -X %[1]s.gitVersion=%[2]s -X %[1]s.gitMajor=%[3]s -X %[1]s.gitMinor=%[4]s -X %[1]s.gitTreeState=clean -X %[1]s.buildDate=1970-01-01T00:00:00Z", p, kube, major, minor)
	}
	args := []string{"build", "-trimpath", "-ldflags", ld, "-o", tmp + "/", "./cmd/etcd"}
	for _, c := range []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kubectl"} {
		args = append(args, "k8s.io/kubernetes/cmd/"+c)
	}
	if _, err := command(ctx, mod, []string{"CGO_ENABLED=0", "GOWORK=off"}, nil, "go", args...); err != nil {
		return "", err
	}
	download := exec.CommandContext(ctx, "go", "mod", "download", "-json", "k8s.io/kubernetes@"+kube)
	download.Dir = mod
	dl, err := download.Output()
	var m struct{ Dir, Error string }
	if jerr := json.Unmarshal(dl, &m); err != nil || jerr != nil || m.Dir == "" {
		return "", fmt.Errorf("go mod download of k8s.io/kubernetes %s: %v %v %s", kube, err, jerr, m.Error)
	}
	pause := filepath.Join(tmp, "pause")
	if _, err := command(ctx, "", nil, nil, "gcc", "-Os", "-static", "-DVERSION="+kube+"-e2e", "-o", pause, filepath.Join(m.Dir, "build", "pause", "linux", "pause.c")); err != nil {
		return "", err
	}
	if _, err := command(ctx, "", nil, nil, "strip", pause); err != nil {
		return "", err
	}
	os.RemoveAll(bin)
	if err := os.Rename(tmp, bin); err != nil {
		return "", fmt.Errorf("kube binaries: %w", err)
	}
	return bin, nil
}

// kubeCluster is a one-node Kubernetes on loopback: Debian's containerd
// with the CRI plugin, etcd, the control plane and kubelet, each a daemon
// of the harness, with every file under dir. Only hostNetwork pods run
// (no CNI beyond loopback, no kube-proxy, no cluster DNS).
type kubeCluster struct {
	bin, dir   string
	kubeconfig string
	daemons    []*daemon
	// podLog is the running `kubectl logs --follow` of the workspace's pod.
	podLog *daemon
}

// path of a file of the cluster's state.
func (k *kubeCluster) path(elem ...string) string {
	return filepath.Join(append([]string{k.dir}, elem...)...)
}

func (k *kubeCluster) ctrSocket() string { return k.path("containerd", kubeletSock) }

// startKube brings the cluster up from the binaries in bin, its state in
// cache/kube (what a killed run left there is cleaned first), and waits
// for the node to be Ready. On error everything it started is stopped.
func startKube(ctx context.Context, bin, cache string, logf func(string, ...any)) (k *kubeCluster, err error) {
	k = &kubeCluster{bin: bin, dir: filepath.Join(cache, kubeStateDir)}
	if err := teardownKube(k.dir); err != nil {
		return nil, fmt.Errorf("what a previous run left: %w", err)
	}
	// The content store survives (a warm run imports no image again);
	// everything else starts empty.
	entries, _ := os.ReadDir(k.dir)
	for _, e := range entries {
		if e.Name() != "containerd" {
			if err := os.RemoveAll(k.path(e.Name())); err != nil {
				return nil, fmt.Errorf("kube state: %w", err)
			}
		}
	}
	os.RemoveAll(k.path("containerd", "state"))
	for _, d := range []string{"pki", "logs", "containerd", "cni", "kubelet", "pod-logs", "etcd", "runc", "pv"} {
		if err := os.MkdirAll(k.path(d), 0o700); err != nil {
			return nil, fmt.Errorf("kube state: %w", err)
		}
	}
	defer func() {
		if err != nil {
			k.stop()
			k = nil
		}
	}()
	start := time.Now()
	mark := func(what string) { logf("kube: %s at %s", what, time.Since(start).Round(10*time.Millisecond)) }
	if err := k.writeConfigs(); err != nil {
		return k, err
	}
	mark("certificates and configs")

	if err := k.start(ctx, "containerd", "--config", k.path("containerd", "config.toml")); err != nil {
		return k, err
	}
	if err := k.waitUp(ctx, "containerd", func() error { _, err := k.ctr(ctx, nil, "version"); return err }); err != nil {
		return k, err
	}
	if err := k.importPause(ctx); err != nil {
		return k, err
	}
	mark("containerd with the pause image")

	if err := k.start(ctx, "etcd", "--name", "e2e", "--data-dir", k.path("etcd"), "--unsafe-no-fsync",
		"--listen-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPort), "--advertise-client-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPort),
		"--listen-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPort+1), "--initial-advertise-peer-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPort+1),
		"--initial-cluster", fmt.Sprintf("e2e=http://127.0.0.1:%d", etcdPort+1), "--listen-metrics-urls", fmt.Sprintf("http://127.0.0.1:%d", etcdPort+2)); err != nil {
		return k, err
	}
	pki := func(name string) string { return k.path("pki", name) }
	if err := k.start(ctx, "kube-apiserver", "--etcd-servers", fmt.Sprintf("http://127.0.0.1:%d", etcdPort),
		"--bind-address", "127.0.0.1", "--secure-port", strconv.Itoa(kubeAPIPort), "--advertise-address", "127.0.0.1",
		"--endpoint-reconciler-type", "none", "--service-cluster-ip-range", "10.96.0.0/24",
		"--tls-cert-file", pki("apiserver.crt"), "--tls-private-key-file", pki("apiserver.key"), "--client-ca-file", pki("ca.crt"),
		"--kubelet-client-certificate", pki("admin.crt"), "--kubelet-client-key", pki("admin.key"),
		"--kubelet-preferred-address-types", "Hostname,InternalIP",
		"--service-account-issuer", "https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file", pki("sa.pub"), "--service-account-signing-key-file", pki("sa.key"),
		"--authorization-mode", "Node,RBAC", "--allow-privileged=true", "--profiling=false"); err != nil {
		return k, err
	}
	if err := k.waitUp(ctx, "kube-apiserver", func() error { _, err := k.kubectl(ctx, nil, "get", "--raw", "/readyz"); return err }); err != nil {
		return k, err
	}
	mark("etcd and the apiserver")
	admin := k.path("admin.kubeconfig")
	if err := k.start(ctx, "kube-controller-manager", "--kubeconfig", admin,
		"--authentication-kubeconfig", admin, "--authorization-kubeconfig", admin,
		"--bind-address", "127.0.0.1", "--secure-port", "10257", "--leader-elect=false",
		"--service-account-private-key-file", pki("sa.key"), "--root-ca-file", pki("ca.crt"),
		"--cluster-signing-cert-file", pki("ca.crt"), "--cluster-signing-key-file", pki("ca.key"),
		"--pvclaimbinder-sync-period", "2s", "--profiling=false"); err != nil {
		return k, err
	}
	if err := k.start(ctx, "kube-scheduler", "--kubeconfig", admin,
		"--authentication-kubeconfig", admin, "--authorization-kubeconfig", admin,
		"--bind-address", "127.0.0.1", "--secure-port", "10259", "--leader-elect=false", "--profiling=false"); err != nil {
		return k, err
	}

	// kubelet changes sysctls and makes fixed folders: note what was there.
	if err := k.saveHostState(); err != nil {
		return k, err
	}
	if err := k.start(ctx, "kubelet", "--config", k.path("kubelet.yaml"), "--kubeconfig", k.path("kubelet.kubeconfig"),
		"--root-dir", k.path("kubelet"), "--hostname-override", kubeNode, "--v", "1"); err != nil {
		return k, err
	}
	if err := k.waitUp(ctx, "node Ready", func() error {
		out, err := k.kubectl(ctx, nil, "get", "node", kubeNode, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err == nil && strings.TrimSpace(out) != "True" {
			err = fmt.Errorf("node Ready: %q", out)
		}
		return err
	}); err != nil {
		return k, err
	}
	if err := k.waitUp(ctx, "the default service account", func() error {
		_, err := k.kubectl(ctx, nil, "-n", "default", "get", "serviceaccount", "default")
		return err
	}); err != nil {
		return k, err
	}
	mark("node Ready")
	return k, nil
}

// start runs one of the cluster's programs as a daemon, its log under logs/.
func (k *kubeCluster) start(ctx context.Context, name string, args ...string) error {
	prog := filepath.Join(k.bin, name)
	if name == "containerd" {
		prog = "containerd"
	}
	d, err := startDaemon(prog, k.path("logs", name+".log"), []string{"PATH=" + k.bin + ":" + os.Getenv("PATH") + ":/usr/sbin:/sbin"}, nil, args...)
	if err != nil {
		return err
	}
	k.daemons = append(k.daemons, d)
	return os.WriteFile(k.path("logs", name+".pid"), []byte(strconv.Itoa(d.cmd.Process.Pid)), 0o644)
}

// waitUp waits for check, failing early with the log of a daemon that died.
func (k *kubeCluster) waitUp(ctx context.Context, what string, check func() error) error {
	return waitFor(ctx, 3*time.Minute, 200*time.Millisecond, what, func() error {
		for _, d := range k.daemons {
			if d.exited() {
				return fmt.Errorf("%s exited:\n%s", d.name, tailFile(d.log, 20))
			}
		}
		return check()
	})
}

// kubectl runs kubectl as the cluster's admin.
func (k *kubeCluster) kubectl(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	return command(ctx, "", nil, stdin, filepath.Join(k.bin, "kubectl"), append([]string{"--kubeconfig", k.kubeconfig}, args...)...)
}

// ctr runs containerd's ctr on the cluster's containerd, namespace k8s.io.
func (k *kubeCluster) ctr(ctx context.Context, stdin io.Reader, args ...string) (string, error) {
	return command(ctx, "", nil, stdin, "ctr", append([]string{"--address", k.ctrSocket(), "--namespace", "k8s.io"}, args...)...)
}

// importImage loads a `docker save` archive into the node's containerd,
// unless the image is there with that config digest (Docker's image ID).
func (k *kubeCluster) importImage(ctx context.Context, ref, id, archive string) error {
	name := ref
	if !strings.Contains(strings.SplitN(ref, "/", 2)[0], ".") {
		name = "docker.io/" + ref
	}
	if cfg, err := k.imageConfig(ctx, name); err == nil && cfg == id {
		return nil
	}
	f, err := os.Open(archive)
	if err != nil {
		return fmt.Errorf("image archive: %w", err)
	}
	defer f.Close()
	_, err = k.ctr(ctx, f, "images", "import", "-")
	return err
}

// imageConfig is the config digest of an image in the node's containerd.
func (k *kubeCluster) imageConfig(ctx context.Context, name string) (string, error) {
	out, err := k.ctr(ctx, nil, "images", "ls", "name=="+name)
	if err != nil {
		return "", err
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 2 {
		return "", errors.New("no image " + name)
	}
	f := strings.Fields(lines[1])
	if len(f) < 3 {
		return "", errors.New("ctr images ls: " + lines[1])
	}
	manifest, err := k.ctr(ctx, nil, "content", "get", f[2])
	if err != nil {
		return "", err
	}
	var m struct {
		Config struct{ Digest string } `json:"config"`
	}
	if err := json.Unmarshal([]byte(manifest), &m); err != nil {
		return "", fmt.Errorf("manifest of %s: %w", name, err)
	}
	return m.Config.Digest, nil
}

// importPause makes the sandbox image from the pause binary (a one-layer
// docker archive written here) and imports it.
func (k *kubeCluster) importPause(ctx context.Context) error {
	bin, err := os.ReadFile(filepath.Join(k.bin, "pause"))
	if err != nil {
		return fmt.Errorf("pause: %w", err)
	}
	archive, err := oneFileImage(pauseImage, "pause", bin)
	if err != nil {
		return err
	}
	_, err = k.ctr(ctx, bytes.NewReader(archive), "images", "import", "-")
	return err
}

// oneFileImage is a `docker save` archive of an image whose only file is
// /name, its entrypoint.
func oneFileImage(ref, name string, content []byte) ([]byte, error) {
	var layer bytes.Buffer
	lw := tar.NewWriter(&layer)
	if err := lw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, Size: int64(len(content)), Typeflag: tar.TypeReg}); err != nil {
		return nil, err
	}
	if _, err := lw.Write(content); err != nil {
		return nil, err
	}
	if err := lw.Close(); err != nil {
		return nil, err
	}
	layerSum := sha256.Sum256(layer.Bytes())
	diff := hex.EncodeToString(layerSum[:])
	cfg, err := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Entrypoint": []string{"/" + name}, "WorkingDir": "/"},
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + diff}},
	})
	if err != nil {
		return nil, err
	}
	cfgSum := sha256.Sum256(cfg)
	cfgName := hex.EncodeToString(cfgSum[:]) + ".json"
	manifest, err := json.Marshal([]map[string]any{{"Config": cfgName, "RepoTags": []string{ref}, "Layers": []string{diff + "/layer.tar"}}})
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	w := tar.NewWriter(&out)
	for _, f := range []struct {
		name string
		body []byte
	}{{cfgName, cfg}, {diff + "/layer.tar", layer.Bytes()}, {"manifest.json", manifest}} {
		if err := w.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.body)), Typeflag: tar.TypeReg}); err != nil {
			return nil, err
		}
		if _, err := w.Write(f.body); err != nil {
			return nil, err
		}
	}
	return out.Bytes(), w.Close()
}

// writeConfigs writes the certificates, kubeconfigs, containerd's config
// (CRI plugin, a loopback-only CNI config) and kubelet's config.
func (k *kubeCluster) writeConfigs() error {
	if err := writePKI(k.path("pki")); err != nil {
		return err
	}
	k.kubeconfig = k.path("admin.kubeconfig")
	for _, u := range []string{"admin", "kubelet"} {
		conf := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: e2e, cluster: {server: "https://127.0.0.1:%d", certificate-authority: %q}}]
users: [{name: %s, user: {client-certificate: %q, client-key: %q}}]
contexts: [{name: e2e, context: {cluster: e2e, user: %s}}]
current-context: e2e
`, kubeAPIPort, k.path("pki", "ca.crt"), u, k.path("pki", u+".crt"), k.path("pki", u+".key"), u)
		if err := os.WriteFile(k.path(u+".kubeconfig"), []byte(conf), 0o600); err != nil {
			return fmt.Errorf("kubeconfig: %w", err)
		}
	}
	// Only hostNetwork pods run, for which no CNI plugin is called: the
	// folder of plugins (Debian's containernetworking-plugins) may be empty.
	cni := "/usr/lib/cni"
	containerd := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = %[3]q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[4]q
  stream_server_address = "127.0.0.1"
  # No CAP_SYS_RESOURCE here: runc cannot lower oom_score_adj (pause's
  # -998), so scores are clamped to containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = %[5]q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[6]q
    conf_dir = %[7]q
`, k.path("containerd", "root"), k.path("containerd", "state"), k.ctrSocket(), pauseImage, k.path("runc"), cni, k.path("cni"))
	if err := os.WriteFile(k.path("containerd", "config.toml"), []byte(containerd), 0o600); err != nil {
		return fmt.Errorf("containerd config: %w", err)
	}
	// The CRI plugin reports the network ready once it has any conflist.
	if err := os.WriteFile(k.path("cni", "10-loopback.conflist"), []byte(`{"cniVersion": "0.4.0", "name": "loopback-only", "plugins": [{"type": "loopback"}]}`+"\n"), 0o600); err != nil {
		return fmt.Errorf("cni config: %w", err)
	}
	kubelet := fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: 10250
healthzBindAddress: 127.0.0.1
healthzPort: 10248
readOnlyPort: 0
containerRuntimeEndpoint: unix://%s
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: %q}
authorization: {mode: Webhook}
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
makeIPTablesUtilChains: false
podLogsDir: %q
resolvConf: /etc/resolv.conf
serializeImagePulls: false
evictionHard: {memory.available: "100Mi", nodefs.available: "2%%", imagefs.available: "2%%"}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
`, k.ctrSocket(), k.path("pki", "ca.crt"), k.path("pod-logs"))
	if err := os.WriteFile(k.path("kubelet.yaml"), []byte(kubelet), 0o600); err != nil {
		return fmt.Errorf("kubelet config: %w", err)
	}
	return nil
}

// writePKI makes the cluster's CA, the apiserver's serving certificate,
// the admin's and the kubelet's client certificates and the service
// account key pair (ECDSA P-256 throughout).
func writePKI(dir string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now().Add(-time.Hour)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "coder-slots-e2e-ca"},
		NotBefore: now, NotAfter: now.Add(7 * 24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	writePair := func(name string, der []byte, key *ecdsa.PrivateKey) error {
		kb, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	}
	if err := writePair("ca", caDER, caKey); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	for i, c := range []struct {
		name string
		subj pkix.Name
		ips  []net.IP
		dns  []string
		use  x509.ExtKeyUsage
	}{
		{"apiserver", pkix.Name{CommonName: "kube-apiserver"}, []net.IP{net.IPv4(127, 0, 0, 1), net.IPv4(10, 96, 0, 1)},
			[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}, x509.ExtKeyUsageServerAuth},
		{"admin", pkix.Name{CommonName: "kubernetes-admin", Organization: []string{"system:masters"}}, nil, nil, x509.ExtKeyUsageClientAuth},
		{"kubelet", pkix.Name{CommonName: "system:node:" + kubeNode, Organization: []string{"system:nodes"}}, nil, nil, x509.ExtKeyUsageClientAuth},
	} {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(int64(i + 2)), Subject: c.subj, NotBefore: now, NotAfter: now.Add(7 * 24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{c.use},
			IPAddresses: c.ips, DNSNames: c.dns,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			return err
		}
		if err := writePair(c.name, der, key); err != nil {
			return fmt.Errorf("pki: %w", err)
		}
	}
	sa, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	skb, err := x509.MarshalECPrivateKey(sa)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(&sa.PublicKey)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "sa.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: skb}), 0o600); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sa.pub"), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub}), 0o600); err != nil {
		return fmt.Errorf("pki: %w", err)
	}
	return nil
}

// saveHostState records, before kubelet starts, the sysctls it changes and
// which of its fixed folders exist, for teardownKube.
func (k *kubeCluster) saveHostState() error {
	var saved []string
	for _, s := range kubeletSysctls {
		b, err := os.ReadFile(filepath.Join("/proc/sys", s))
		if err != nil {
			return fmt.Errorf("sysctl %s: %w", s, err)
		}
		saved = append(saved, s+"="+strings.TrimSpace(string(b)))
	}
	for _, d := range kubeletFixedDirs {
		if _, err := os.Stat(d); errors.Is(err, os.ErrNotExist) {
			saved = append(saved, "created="+d)
		}
	}
	return os.WriteFile(k.path("host-state"), []byte(strings.Join(saved, "\n")+"\n"), 0o600)
}

// stop ends the cluster and restores the host: see teardownKube.
func (k *kubeCluster) stop() {
	if k == nil {
		return
	}
	if err := teardownKube(k.dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: kube teardown: "+err.Error())
	}
	k.daemons = nil
}

// teardownKube stops a cluster whose state is in dir, whether this process
// started it or a run that was killed did: kubelet first (so it restarts no
// pod), the pods' containers, the control plane, etcd, containerd and its
// shims, each by the PID the harness recorded or by an argument naming
// dir; then it unmounts what is mounted under dir, removes the cgroups
// kubelet made, puts back the sysctls it changed and removes the fixed
// folders that were not there before. Docker's containerd and its shims
// are never touched (they name no path under dir).
func teardownKube(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stopByName := func(name string, grace time.Duration) {
		pid := 0
		if b, err := os.ReadFile(filepath.Join(dir, "logs", name+".pid")); err == nil {
			pid, _ = strconv.Atoi(strings.TrimSpace(string(b)))
		}
		for _, p := range processesNaming(dir) {
			if p.name == name && p.pid != pid {
				killAndWait(p.pid, grace)
			}
		}
		if pid > 0 && processNames(pid, dir) {
			killAndWait(pid, grace)
		}
		os.Remove(filepath.Join(dir, "logs", name+".pid"))
	}
	stopByName("kubelet", 20*time.Second)
	sock := filepath.Join(dir, "containerd", kubeletSock)
	if _, err := os.Stat(sock); err == nil {
		ctr := func(args ...string) string {
			out, _ := command(ctx, "", nil, nil, "ctr", append([]string{"--address", sock, "--namespace", "k8s.io"}, args...)...)
			return out
		}
		for _, id := range strings.Fields(ctr("tasks", "ls", "-q")) {
			ctr("tasks", "kill", "-s", "SIGKILL", id)
		}
		for _, id := range strings.Fields(ctr("tasks", "ls", "-q")) {
			_ = waitFor(ctx, 10*time.Second, 100*time.Millisecond, "task "+id+" ends", func() error {
				if strings.Contains(ctr("tasks", "ls"), id+" ") && !strings.Contains(ctr("tasks", "ls"), "STOPPED") {
					return errors.New("running")
				}
				return nil
			})
			ctr("tasks", "delete", "-f", id)
		}
		for _, id := range strings.Fields(ctr("containers", "ls", "-q")) {
			ctr("containers", "delete", id)
		}
	}
	for _, name := range []string{"kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd", "containerd"} {
		stopByName(name, 20*time.Second)
	}
	// Shims outlive their containerd by design; ours name its socket.
	for _, p := range processesNaming(dir) {
		killAndWait(p.pid, 5*time.Second)
	}
	unmountUnder(dir)
	for _, pattern := range []string{"/sys/fs/cgroup/*/kubepods", "/sys/fs/cgroup/*/kubepods.slice", "/sys/fs/cgroup/kubepods", "/sys/fs/cgroup/unified/kubepods", "/sys/fs/cgroup/*/k8s.io"} {
		roots, _ := filepath.Glob(pattern)
		for _, r := range roots {
			removeCgroupTree(r)
		}
	}
	links, _ := os.ReadDir(kubeletContainerLogs)
	for _, l := range links {
		p := filepath.Join(kubeletContainerLogs, l.Name())
		if target, err := os.Readlink(p); err == nil && strings.HasPrefix(target, dir+"/") {
			os.Remove(p)
		}
	}
	var errs []error
	if b, err := os.ReadFile(filepath.Join(dir, "host-state")); err == nil {
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			key, val, _ := strings.Cut(line, "=")
			if key == "created" {
				if err := os.RemoveAll(val); err != nil {
					errs = append(errs, err)
				}
				continue
			}
			if err := os.WriteFile(filepath.Join("/proc/sys", key), []byte(val), 0o644); err != nil {
				errs = append(errs, fmt.Errorf("restore sysctl %s: %w", key, err))
			}
		}
		if len(errs) == 0 {
			os.Remove(filepath.Join(dir, "host-state"))
		}
	}
	// containerd 1.6 keeps every shim's socket under /run/containerd/s,
	// whatever its state dir, shared with any other containerd: remove
	// only what is empty.
	for _, d := range []string{"/run/containerd/s", "/run/containerd/fifo", "/run/containerd"} {
		_ = syscall.Rmdir(d)
	}
	if left := processesNaming(dir); len(left) > 0 {
		errs = append(errs, fmt.Errorf("processes still running: %v", left))
	}
	return errors.Join(errs...)
}

// removeCgroupTree removes a cgroup folder and its children, deepest first
// (a cgroup folder is removed with rmdir, its files with it).
func removeCgroupTree(root string) {
	var dirs []string
	_ = filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	slices.SortFunc(dirs, func(a, b string) int { return len(b) - len(a) })
	for _, d := range dirs {
		_ = syscall.Rmdir(d)
	}
}

// proc is a process whose arguments name the cluster's state dir.
type proc struct {
	pid  int
	name string
}

// processesNaming lists the processes with an argument under dir (every
// program of the cluster has one: a config, a socket, a data dir).
func processesNaming(dir string) []proc {
	var out []proc
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, c := range cmdlines {
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(c)))
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(c)
		if err != nil || len(b) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if slices.ContainsFunc(args[1:], func(a string) bool { return strings.Contains(a, dir+"/") }) {
			out = append(out, proc{pid: pid, name: filepath.Base(args[0])})
		}
	}
	return out
}

// processNames says whether pid is alive and has an argument under dir (a
// recorded PID that was reused by another program is left alone).
func processNames(pid int, dir string) bool {
	return slices.ContainsFunc(processesNaming(dir), func(p proc) bool { return p.pid == pid })
}

// killAndWait sends SIGTERM, then SIGKILL after grace, and waits for the
// process to be gone (a child of ours is reaped by its daemon's Wait).
func killAndWait(pid int, grace time.Duration) {
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(grace)
	for alive(pid) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if alive(pid) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 100 && alive(pid); i++ {
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// alive: the process exists and is not a zombie.
func alive(pid int) bool {
	f, err := os.Open(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	defer f.Close()
	r := bufio.NewReader(f)
	if _, err := r.ReadString(')'); err != nil {
		return false
	}
	rest, _ := io.ReadAll(r)
	fields := strings.Fields(string(rest))
	return len(fields) > 0 && fields[0] != "Z"
}
