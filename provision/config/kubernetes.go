package config

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/spf13/cast"
	yaml "go.yaml.in/yaml/v3"
)

// Targets: what the workspace runs on.
const (
	// TargetDocker is a container and a volume on Coder's Docker host.
	TargetDocker = "docker"
	// TargetKubernetes is a Deployment and a PersistentVolumeClaim.
	TargetKubernetes = "kubernetes"
	// TargetModule is a Terraform module that adds the slots to a
	// template someone else wrote (checkModule).
	TargetModule = "module"
)

// Kubernetes configures the kubernetes target. The container's limits are
// the resources keys.
type Kubernetes struct {
	// Namespace is the default of the template's namespace variable.
	Namespace string
	// StorageClass is the home PVC's storage class; empty: the cluster's
	// default.
	StorageClass string
	// HomeSize is the home PVC's size, a Kubernetes quantity such as "10Gi".
	HomeSize string
	// CPURequest and MemoryRequest are the container's requests, quantities
	// such as "250m" and "512Mi"; empty: none.
	CPURequest    string
	MemoryRequest string
	// ImagePullSecret names a secret in the namespace; empty: none.
	ImagePullSecret string
	// ServiceAccount is the pod's service account; empty: the namespace's
	// default.
	ServiceAccount string
	// TerminationGraceSeconds is how long Kubernetes waits after the
	// SIGTERM before it kills the pod: above ShutdownTimeoutSeconds.
	TerminationGraceSeconds int
	// HostNetwork puts the pod on its node's network (its ports are the
	// node's), for clusters where the pod must reach Coder on the node.
	HostNetwork bool
	// ImagePullPolicy is the container's: one of PullPolicies, or empty
	// (Kubernetes decides: Always for a :latest tag, else IfNotPresent).
	ImagePullPolicy string
	// ConfigPath is the kubeconfig file the provisioner reads (the default
	// of the template's kube_config_path variable); empty: in-cluster, the
	// provisioner's own service account.
	ConfigPath string
	// ConfigContext is the kubeconfig context; empty: the file's current
	// one.
	ConfigContext string
	// StartTimeoutSeconds bounds how long a build waits for the pod to be
	// available: an image that cannot be pulled or a pod that cannot be
	// scheduled fails the build then.
	StartTimeoutSeconds int
	// NodeSelector, Labels and Annotations come from slots.yaml only (their
	// keys keep their case there).
	NodeSelector map[string]string
	Tolerations  []Toleration
	Labels       map[string]string
	Annotations  map[string]string
}

// PullPolicies are the container image pull policies Kubernetes knows.
var PullPolicies = []string{"Always", "IfNotPresent", "Never"}

// Toleration is one of the pod's tolerations.
type Toleration struct {
	Key      string
	Operator string
	Value    string
	Effect   string
	// Seconds is toleration_seconds; nil: not set.
	Seconds *int
}

// File-only kubernetes keys: maps and a list that have no environment
// variable or flag.
const (
	keyNodeSelector = "kubernetes.node_selector"
	keyTolerations  = "kubernetes.tolerations"
	keyLabels       = "kubernetes.labels"
	keyAnnotations  = "kubernetes.annotations"
)

var (
	fileOnlyMaps   = []string{keyNodeSelector, keyLabels, keyAnnotations}
	tolerationKeys = []string{"key", "operator", "value", "effect", "toleration_seconds"}
)

// CoderLabels are the label keys the template sets on the workspace's
// Deployment, pods and PVC; kubernetes.labels may not set them.
var CoderLabels = []string{
	"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/part-of",
	"com.coder.resource", "com.coder.workspace.id", "com.coder.workspace.name",
	"com.coder.user.id", "com.coder.user.username",
}

var (
	// dns1123LabelRe is a DNS-1123 label (namespaces), at most 63 characters.
	dns1123LabelRe = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	// dns1123SubdomainRe is a DNS-1123 subdomain (secret, service account and
	// storage class names, label key prefixes), at most 253 characters.
	dns1123SubdomainRe = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	// qualifiedNameRe is a label or annotation key's name part, and a
	// non-empty label value; at most 63 characters.
	qualifiedNameRe = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)
	// quantityRe is a Kubernetes resource quantity: a decimal number with a
	// binary (Ki…Ei) or decimal (m, k, M…E, e<n>) suffix.
	quantityRe = regexp.MustCompile(`^([0-9]+(\.[0-9]*)?|\.[0-9]+)(Ki|Mi|Gi|Ti|Pi|Ei|m|k|M|G|T|P|E|[eE][-+]?[0-9]+)?$`)
)

// readFileOnly reads the file-only kubernetes keys from slots.yaml with
// their case kept (viper lowers every key, and label keys are
// case-sensitive). Keys are matched without case, as viper does.
func readFileOnly(file string) (map[string]any, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %s", file, oneLine(err.Error()))
	}
	out := map[string]any{}
	k8s, _ := lookupFold(doc, "kubernetes").(map[string]any)
	for _, key := range append(slices.Clone(fileOnlyMaps), keyTolerations) {
		if v := lookupFold(k8s, strings.TrimPrefix(key, "kubernetes.")); v != nil {
			out[key] = v
		}
	}
	return out, nil
}

// lookupFold is m[key] with the key matched without case.
func lookupFold(m map[string]any, key string) any {
	for k, v := range m {
		if strings.EqualFold(k, key) {
			return v
		}
	}
	return nil
}

// knownFileOnly says whether a key viper reports (lower-cased, map entries
// flattened) belongs to a file-only kubernetes key.
func knownFileOnly(key string) bool {
	for _, m := range fileOnlyMaps {
		if key == m || strings.HasPrefix(key, m+".") {
			return true
		}
	}
	return key == keyTolerations
}

// checkTolerationKeys reports the first unknown key of a tolerations entry.
func checkTolerationKeys(raw any) error {
	if raw == nil {
		return nil
	}
	list, ok := raw.([]any)
	if !ok {
		return fmt.Errorf("%s: want a list of tolerations", keyTolerations)
	}
	for i, item := range list {
		m, ok := item.(map[string]any)
		if !ok {
			return fmt.Errorf("%s[%d]: want a mapping with key, operator, …", keyTolerations, i)
		}
		for _, name := range slices.Sorted(maps.Keys(m)) {
			if !slices.Contains(tolerationKeys, strings.ToLower(name)) {
				prefix := fmt.Sprintf("%s[%d].", keyTolerations, i)
				return unknownKey(prefix+name, prefixed(prefix, tolerationKeys))
			}
		}
	}
	return nil
}

// defaultOf is the default of a scalar key.
func defaultOf(name string) any {
	for _, k := range Keys() {
		if k.Name == name {
			return k.Default
		}
	}
	panic("config: no key " + name)
}

// kubernetes decodes the kubernetes keys: scalars from viper, the rest from
// the file.
func (d *decoder) kubernetes() Kubernetes {
	k := Kubernetes{
		Namespace:               d.str("kubernetes.namespace"),
		StorageClass:            d.str("kubernetes.storage_class"),
		HomeSize:                d.str("kubernetes.home_size"),
		CPURequest:              d.str("kubernetes.cpu_request"),
		MemoryRequest:           d.str("kubernetes.memory_request"),
		ImagePullSecret:         d.str("kubernetes.image_pull_secret"),
		ServiceAccount:          d.str("kubernetes.service_account"),
		TerminationGraceSeconds: d.int("kubernetes.termination_grace_seconds"),
		HostNetwork:             d.bool("kubernetes.host_network"),
		ImagePullPolicy:         d.str("kubernetes.image_pull_policy"),
		ConfigPath:              d.str("kubernetes.config_path"),
		ConfigContext:           d.str("kubernetes.config_context"),
		StartTimeoutSeconds:     d.int("kubernetes.start_timeout_seconds"),
		NodeSelector:            d.stringMap(keyNodeSelector),
		Labels:                  d.stringMap(keyLabels),
		Annotations:             d.stringMap(keyAnnotations),
	}
	list, _ := d.fileOnly[keyTolerations].([]any)
	for i, item := range list {
		m, _ := item.(map[string]any)
		key := func(k string) string { return fmt.Sprintf("%s[%d].%s", keyTolerations, i, k) }
		t := Toleration{
			Key:      d.optString(key("key"), lookupFold(m, "key"), ""),
			Operator: d.optString(key("operator"), lookupFold(m, "operator"), ""),
			Value:    d.optString(key("value"), lookupFold(m, "value"), ""),
			Effect:   d.optString(key("effect"), lookupFold(m, "effect"), ""),
		}
		if s := lookupFold(m, "toleration_seconds"); s != nil {
			n, err := cast.ToIntE(s)
			if err != nil {
				d.fail(key("toleration_seconds"), "want a whole number of seconds, got %v", s)
			}
			t.Seconds = &n
		}
		k.Tolerations = append(k.Tolerations, t)
	}
	return k
}

// stringMap decodes a file-only map of strings; nil when absent or empty.
func (d *decoder) stringMap(key string) map[string]string {
	raw := d.fileOnly[key]
	if raw == nil {
		return nil
	}
	m, ok := raw.(map[string]any)
	if len(m) == 0 && ok {
		return nil
	}
	if !ok {
		d.fail(key, "want a mapping of names to values, got %v", raw)
		return nil
	}
	out := map[string]string{}
	for _, k := range slices.Sorted(maps.Keys(m)) {
		switch v := m[k].(type) {
		case map[string]any, []any, nil:
			d.fail(key+"."+k, "want a string, got %v", v)
		default:
			out[k] = strings.TrimSpace(cast.ToString(v))
		}
	}
	return out
}

func (c *Config) checkTarget() error {
	switch c.Target {
	case TargetDocker, TargetKubernetes:
	case TargetModule:
		return c.checkModule()
	default:
		return fmt.Errorf("target: %q is not %q, %q or %q", c.Target, TargetDocker, TargetKubernetes, TargetModule)
	}
	if c.Target != TargetKubernetes {
		return nil
	}
	if c.Image.Mode == ImageBuild {
		return fmt.Errorf("image.mode: %q is for target %s only (Coder's Docker host builds that Dockerfile); with target %s use %q and an image.ref the cluster can pull",
			ImageBuild, TargetDocker, TargetKubernetes, ImagePrebuilt)
	}
	if c.Docker.NetworkMode != "" {
		return fmt.Errorf("docker.network_mode: %q is for target %s only; a pod has the cluster's network", c.Docker.NetworkMode, TargetDocker)
	}
	if g := c.Docker.StopGraceSeconds; g != defaultOf("docker.stop_grace_seconds") {
		return fmt.Errorf("docker.stop_grace_seconds: %d is for target %s only; a pod's is kubernetes.termination_grace_seconds", g, TargetDocker)
	}
	return c.checkGrace("kubernetes.termination_grace_seconds", c.Kubernetes.TerminationGraceSeconds, "Kubernetes")
}

func (c *Config) checkKubernetes() error {
	k := c.Kubernetes
	if len(k.Namespace) > 63 || !dns1123LabelRe.MatchString(k.Namespace) {
		return fmt.Errorf("kubernetes.namespace: %q is not a DNS-1123 label (lower-case letters, digits and '-', at most 63)", k.Namespace)
	}
	for _, n := range []struct{ key, val string }{
		{"kubernetes.storage_class", k.StorageClass},
		{"kubernetes.image_pull_secret", k.ImagePullSecret},
		{"kubernetes.service_account", k.ServiceAccount},
	} {
		if n.val != "" && !isSubdomain(n.val) {
			return fmt.Errorf("%s: %q is not a DNS-1123 name (lower-case letters, digits, '-' and '.')", n.key, n.val)
		}
	}
	size, err := quantity(k.HomeSize)
	if err != nil || size <= 0 {
		return fmt.Errorf("kubernetes.home_size: %q is not a positive quantity such as 10Gi", k.HomeSize)
	}
	limits := map[string]string{"cpu": c.Resources.CPUs}
	if c.Resources.MemoryMB > 0 {
		limits["memory"] = strconv.Itoa(c.Resources.MemoryMB) + "Mi"
	}
	for _, r := range []struct{ key, res, val string }{
		{"kubernetes.cpu_request", "cpu", k.CPURequest},
		{"kubernetes.memory_request", "memory", k.MemoryRequest},
	} {
		if r.val == "" {
			continue
		}
		req, err := quantity(r.val)
		if err != nil || req <= 0 {
			return fmt.Errorf("%s: %q is not a positive quantity (e.g. 250m CPU, 512Mi memory)", r.key, r.val)
		}
		if limits[r.res] == "" {
			continue
		}
		if limit, _ := quantity(limits[r.res]); req > limit {
			return fmt.Errorf("%s: %s is above the %s limit %s (resources)", r.key, r.val, r.res, limits[r.res])
		}
	}
	if k.ImagePullPolicy != "" && !slices.Contains(PullPolicies, k.ImagePullPolicy) {
		return fmt.Errorf("kubernetes.image_pull_policy: %q is not %s (or empty: Kubernetes decides)", k.ImagePullPolicy, strings.Join(PullPolicies, ", "))
	}
	if err := checkConfigPath(k.ConfigPath); err != nil {
		return fmt.Errorf("kubernetes.config_path: %w", err)
	}
	if k.ConfigContext != "" && k.ConfigPath == "" {
		return fmt.Errorf("kubernetes.config_context: %q needs kubernetes.config_path (in-cluster has no contexts)", k.ConfigContext)
	}
	if strings.ContainsFunc(k.ConfigContext, unicode.IsControl) {
		return fmt.Errorf("kubernetes.config_context: %q has control characters", k.ConfigContext)
	}
	if t := k.StartTimeoutSeconds; t < 10 || t > 3600 {
		return fmt.Errorf("kubernetes.start_timeout_seconds: %d is not between 10 and 3600", t)
	}
	if err := checkLabels(keyLabels, k.Labels, true); err != nil {
		return err
	}
	if err := checkLabels(keyNodeSelector, k.NodeSelector, true); err != nil {
		return err
	}
	if err := checkLabels(keyAnnotations, k.Annotations, false); err != nil {
		return err
	}
	return checkTolerations(k.Tolerations)
}

// checkConfigPath checks a kubeconfig path for the provisioner: empty
// (in-cluster), absolute, or under the provisioner's home (~/); Coder runs
// Terraform in a temporary directory, so a relative path means nothing.
func checkConfigPath(p string) error {
	switch {
	case p == "":
		return nil
	case strings.ContainsFunc(p, unicode.IsControl):
		return fmt.Errorf("%q has control characters", p)
	case !strings.HasPrefix(p, "/") && !strings.HasPrefix(p, "~/"):
		return fmt.Errorf("%q is neither absolute nor under ~/ (Coder runs Terraform in a temporary directory); empty means in-cluster", p)
	}
	return nil
}

// checkLabels checks label (or, with values false, annotation) keys and
// label values.
func checkLabels(key string, m map[string]string, values bool) error {
	for _, name := range slices.Sorted(maps.Keys(m)) {
		if err := checkQualifiedName(name); err != nil {
			return fmt.Errorf("%s.%s: %w", key, name, err)
		}
		if key != keyNodeSelector && slices.Contains(CoderLabels, name) {
			return fmt.Errorf("%s.%s: the template sets this one itself", key, name)
		}
		if v := m[name]; values && v != "" && (len(v) > 63 || !qualifiedNameRe.MatchString(v)) {
			return fmt.Errorf("%s.%s: %q is not a label value (at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit)", key, name, v)
		}
	}
	return nil
}

// checkQualifiedName checks a label or annotation key: an optional DNS-1123
// subdomain prefix and '/', then a name of at most 63 characters.
func checkQualifiedName(s string) error {
	prefix, name, hasPrefix := strings.Cut(s, "/")
	if !hasPrefix {
		prefix, name = "", s
	}
	if hasPrefix && !isSubdomain(prefix) {
		return fmt.Errorf("prefix %q is not a DNS-1123 subdomain", prefix)
	}
	if len(name) > 63 || !qualifiedNameRe.MatchString(name) {
		return fmt.Errorf("%q is not a label or annotation key (an optional DNS-1123 prefix and '/', then at most 63 letters, digits, '-', '_' and '.')", s)
	}
	return nil
}

func isSubdomain(s string) bool { return len(s) <= 253 && dns1123SubdomainRe.MatchString(s) }

func checkTolerations(ts []Toleration) error {
	for i, t := range ts {
		key := fmt.Sprintf("%s[%d]", keyTolerations, i)
		if t.Key == "" {
			return fmt.Errorf("%s.key: missing (the taint's key)", key)
		}
		if err := checkQualifiedName(t.Key); err != nil {
			return fmt.Errorf("%s.key: %w", key, err)
		}
		switch t.Operator {
		case "Equal":
			if t.Value != "" && (len(t.Value) > 63 || !qualifiedNameRe.MatchString(t.Value)) {
				return fmt.Errorf("%s.value: %q is not a label value", key, t.Value)
			}
		case "Exists":
			if t.Value != "" {
				return fmt.Errorf("%s.value: operator Exists takes no value", key)
			}
		case "":
			return fmt.Errorf("%s.operator: missing (Equal or Exists)", key)
		default:
			return fmt.Errorf("%s.operator: %q is not Equal or Exists", key, t.Operator)
		}
		switch t.Effect {
		case "", "NoSchedule", "PreferNoSchedule", "NoExecute":
		default:
			return fmt.Errorf("%s.effect: %q is not NoSchedule, PreferNoSchedule or NoExecute", key, t.Effect)
		}
		if t.Seconds != nil && t.Effect != "NoExecute" {
			return fmt.Errorf("%s.toleration_seconds: only a NoExecute toleration has a time limit", key)
		}
		if t.Seconds != nil && *t.Seconds < 0 {
			return fmt.Errorf("%s.toleration_seconds: %d is negative", key, *t.Seconds)
		}
	}
	return nil
}

var quantitySuffixes = map[string]float64{
	"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
	"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60,
}

// quantity is the value of a Kubernetes quantity, close enough to compare
// a request with a limit.
func quantity(s string) (float64, error) {
	m := quantityRe.FindStringSubmatch(s)
	if m == nil {
		return 0, errors.New("not a quantity")
	}
	n, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, err
	}
	suffix := m[3]
	if mult, ok := quantitySuffixes[suffix]; ok {
		return n * mult, nil
	}
	exp, err := strconv.Atoi(suffix[1:])
	if err != nil {
		return 0, err
	}
	return n * math.Pow(10, float64(exp)), nil
}
