package render

import (
	"maps"
	"slices"
	"strconv"

	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"

	"github.com/coder-slots/coder-slots/images"
	"github.com/coder-slots/coder-slots/provision/config"
)

// hashicorp/kubernetes version constraints. The local mirror builds
// v1.13.4, the only release the Go module proxy serves; a Coder deployment
// downloads the newest 2.x. Everything main.tf uses was checked in both
// schemas — v1.13.4's module source and the provider repository at tag
// v2.38.0 (kubernetes/provider.go, resource_kubernetes_deployment_v1.go,
// resource_kubernetes_persistent_volume_claim_v1.go, schema_pod_spec.go,
// schema_container.go, schema_volume_source.go, schema_metadata.go,
// schema_persistent_volume_claim.go):
//   - the resource names kubernetes_deployment and
//     kubernetes_persistent_volume_claim (1.13.4 has no _v1 names; 2.x
//     keeps these as aliases of the _v1 resources);
//   - provider config_path;
//   - metadata name, namespace, labels, annotations;
//   - deployment wait_for_rollout, spec replicas (an int in 1.x, a string in
//     2.x: Terraform converts the number), selector.match_labels,
//     strategy.type, template.metadata and template.spec;
//   - pod spec hostname, termination_grace_period_seconds,
//     service_account_name, node_selector, security_context run_as_user and
//     fs_group (ints in 1.x, strings in 2.x) and run_as_non_root,
//     toleration key/operator/value/effect/toleration_seconds,
//     image_pull_secrets.name, volume name and
//     persistent_volume_claim.claim_name;
//   - container name, image, command, env name/value, volume_mount name and
//     mount_path;
//   - PVC wait_until_bound, spec access_modes, storage_class_name and
//     resources.requests (a map in both).
//
// The one exception is the container's resources: limits and requests are
// blocks in 1.x and maps from 2.0 on, and no HCL is valid for both. They are
// rendered, as maps, only when set, and the constraint is then 2.x only
// (which the local mirror cannot validate).
const (
	KubernetesProviderVersion          = ">= 1.13.4, < 3.0.0"
	KubernetesProviderVersionResources = ">= 2.0.0, < 3.0.0"
)

// Template variables of the kubernetes target; push sets the kubeconfig
// ones when slots.yaml does.
const (
	VarNamespace         = "namespace"
	VarKubeConfigPath    = "kube_config_path"
	VarKubeConfigContext = "kube_config_context"
)

// ClusterVariables are the kubeconfig variables c sets, by name: what push
// and plan pass to the template (unset ones keep the render's defaults).
func ClusterVariables(c *config.Config) map[string]string {
	vars := map[string]string{}
	if c.Target != config.TargetKubernetes {
		return vars
	}
	if c.Kubernetes.ConfigPath != "" {
		vars[VarKubeConfigPath] = c.Kubernetes.ConfigPath
	}
	if c.Kubernetes.ConfigContext != "" {
		vars[VarKubeConfigContext] = c.Kubernetes.ConfigContext
	}
	return vars
}

// serviceAccountToken is where a pod finds its service account's token:
// with no kubeconfig, the provisioner must be such a pod.
const serviceAccountToken = "/var/run/secrets/kubernetes.io/serviceaccount/token"

// BuildAnnotation is on the pod template, with the time the build was
// planned: every build rolls out a new ReplicaSet.
const BuildAnnotation = "coder-slots/build-planned-at"

// Names inside the pod spec.
const (
	// workspaceUID is the image's user coder (images/Dockerfile).
	workspaceUID  = 1000
	k8sContainer  = "workspace"
	k8sHomeVolume = "home"
)

// kubernetesProviderVersion is the constraint for c: see
// KubernetesProviderVersion.
func kubernetesProviderVersion(c *config.Config) string {
	if len(containerLimits(c)) > 0 || len(containerRequests(c)) > 0 {
		return KubernetesProviderVersionResources
	}
	return KubernetesProviderVersion
}

// ContainerResourcesNeed2x says whether c's render narrows the kubernetes
// provider to 2.x because it sets the container's requests or limits.
func ContainerResourcesNeed2x(c *config.Config) bool {
	return c.Target == config.TargetKubernetes && kubernetesProviderVersion(c) == KubernetesProviderVersionResources
}

func containerLimits(c *config.Config) map[string]string {
	m := map[string]string{}
	if c.Resources.CPUs != "" {
		m["cpu"] = c.Resources.CPUs
	}
	if c.Resources.MemoryMB > 0 {
		m["memory"] = strconv.Itoa(c.Resources.MemoryMB) + "Mi"
	}
	return m
}

func containerRequests(c *config.Config) map[string]string {
	m := map[string]string{}
	if c.Kubernetes.CPURequest != "" {
		m["cpu"] = c.Kubernetes.CPURequest
	}
	if c.Kubernetes.MemoryRequest != "" {
		m["memory"] = c.Kubernetes.MemoryRequest
	}
	return m
}

// kubernetesVariables is the namespace and kubeconfig variables and the
// provider block, as in Coder's own Kubernetes template.
func (w *writer) kubernetesVariables(b *hclwrite.Body, c *config.Config) {
	v := b.AppendNewBlock("variable", []string{VarNamespace}).Body()
	attrs(v,
		"type", w.expr("string"),
		"description", str("The Kubernetes namespace of the workspace's Deployment and home PVC; it must exist."),
		"default", str(c.Kubernetes.Namespace))
	val := v.AppendNewBlock("validation", nil).Body()
	attrs(val,
		"condition", w.expr(`length(var.namespace) <= 63 && length(regexall("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", var.namespace)) == 1`),
		"error_message", str("namespace must be a DNS-1123 label: lower-case letters, digits and '-', at most 63."))
	b.AppendNewline()

	v = b.AppendNewBlock("variable", []string{VarKubeConfigPath}).Body()
	attrs(v,
		"type", w.expr("string"),
		"description", str("The kubeconfig file Coder's provisioner reads (an absolute path or under ~/), for a Coder outside the cluster; empty: in-cluster, the provisioner's own service account."),
		"default", str(c.Kubernetes.ConfigPath))
	val = v.AppendNewBlock("validation", nil).Body()
	attrs(val,
		"condition", w.expr(`var.kube_config_path == "" || startswith(var.kube_config_path, "/") || startswith(var.kube_config_path, "~/")`),
		"error_message", str("kube_config_path must be empty (in-cluster), absolute, or under ~/: Coder runs Terraform in a temporary directory."))
	b.AppendNewline()

	v = b.AppendNewBlock("variable", []string{VarKubeConfigContext}).Body()
	attrs(v,
		"type", w.expr("string"),
		"description", str("The kubeconfig context; empty: the file's current context (or the provider's KUBE_CTX)."),
		"default", str(c.Kubernetes.ConfigContext))
	b.AppendNewline()

	p := b.AppendNewBlock("provider", []string{"kubernetes"}).Body()
	comment(p,
		"An empty config_path is in-cluster with both provider lines: left null,",
		"1.x would read KUBECONFIG or ~/.kube/config and, finding none, talk to",
		"localhost. The data source coder_workspace checks first that there is",
		"a cluster to find.")
	attrs(p,
		"config_path", w.expr("var.kube_config_path"),
		"config_context", w.expr(`var.kube_config_context != "" ? var.kube_config_context : null`))
	b.AppendNewline()
}

// clusterPreconditions are the checks on data.coder_workspace.me, which
// every resource waits for: a template that finds no cluster fails the
// build saying which setting to use, before the provider dials anything.
func (w *writer) clusterPreconditions(b *hclwrite.Body) {
	lc := b.AppendNewBlock("lifecycle", nil).Body()
	pre := lc.AppendNewBlock("precondition", nil).Body()
	attrs(pre,
		// Conditionals, not ||: Terraform evaluates both sides of ||, and
		// fileexists("") fails on the directory ".".
		"condition", w.expr(`var.kube_config_path == "" ? true : fileexists(pathexpand(var.kube_config_path))`),
		"error_message", w.expr(`"No kubeconfig at \"${var.kube_config_path}\" on Coder's provisioner: set the template variable kube_config_path (slotprov: kubernetes.config_path) to a file it can read, or to \"\" when Coder runs in the cluster."`))
	pre = lc.AppendNewBlock("precondition", nil).Body()
	attrs(pre,
		"condition", w.expr(`var.kube_config_path != "" ? true : fileexists("`+serviceAccountToken+`")`),
		"error_message", str("kube_config_path is empty (in-cluster), but Coder's provisioner runs in no Kubernetes pod (no "+serviceAccountToken+"): set the template variable kube_config_path (slotprov: kubernetes.config_path) to a kubeconfig file."))
}

// kubernetesResources is the workspace on Kubernetes: its labels, the home
// PVC and the Deployment.
func (w *writer) kubernetesResources(b *hclwrite.Body, c *config.Config) {
	l := b.AppendNewBlock("locals", nil).Body()
	// kubernetes.labels go first so that Coder's win (config refuses them
	// anyway).
	extra := ""
	if len(c.Kubernetes.Labels) > 0 {
		attrs(l, "extra_labels", literalMap(c.Kubernetes.Labels))
		extra = "local.extra_labels, "
	}
	if len(c.Kubernetes.Annotations) > 0 {
		attrs(l, "annotations", literalMap(c.Kubernetes.Annotations))
	}
	attrs(l,
		// The selector never changes for a workspace (a Deployment's selector
		// is immutable): no names in it.
		"selector_labels", object(map[string]hclwrite.Tokens{
			"app.kubernetes.io/name":     str("coder-workspace"),
			"app.kubernetes.io/instance": w.expr(`"coder-workspace-${data.coder_workspace.me.id}"`),
			"com.coder.workspace.id":     w.expr("data.coder_workspace.me.id"),
		}),
		"coder_labels", object(map[string]hclwrite.Tokens{
			"app.kubernetes.io/part-of": str("coder"),
			"com.coder.resource":        str("true"),
			"com.coder.workspace.id":    w.expr("data.coder_workspace.me.id"),
			"com.coder.workspace.name":  w.expr("data.coder_workspace.me.name"),
			"com.coder.user.id":         w.expr("data.coder_workspace_owner.me.id"),
			"com.coder.user.username":   w.expr("data.coder_workspace_owner.me.name"),
		}),
		"workspace_labels", w.expr("merge("+extra+"local.coder_labels, local.selector_labels)"),
		"home_labels", w.expr("merge("+extra+`local.coder_labels, {
			"app.kubernetes.io/instance" = "coder-home-${data.coder_workspace.me.id}"
			"app.kubernetes.io/name"     = "coder-home"
		})`))
	b.AppendNewline()

	w.homeClaim(b, c)
	w.deployment(b, c)
}

func (w *writer) metadata(b *hclwrite.Body, c *config.Config, name, labels string) {
	m := b.AppendNewBlock("metadata", nil).Body()
	attrs(m, "name", w.expr(name), "namespace", w.expr("var.namespace"), "labels", w.expr(labels))
	if len(c.Kubernetes.Annotations) > 0 {
		attrs(m, "annotations", w.expr("local.annotations"))
	}
}

func (w *writer) homeClaim(b *hclwrite.Body, c *config.Config) {
	r := b.AppendNewBlock("resource", []string{"kubernetes_persistent_volume_claim", "home"}).Body()
	comment(r,
		"The home volume outlives the pod and the workspace's stops: slotagent's",
		"state, releases and logs live on it. Not bound until its pod is scheduled",
		"(storage classes with WaitForFirstConsumer).")
	attrs(r, "wait_until_bound", lit(cty.False))
	w.metadata(r, c, `"coder-${data.coder_workspace.me.id}-home"`, "local.home_labels")
	spec := r.AppendNewBlock("spec", nil).Body()
	attrs(spec, "access_modes", lit(cty.ListVal([]cty.Value{cty.StringVal("ReadWriteOnce")})))
	if c.Kubernetes.StorageClass != "" {
		attrs(spec, "storage_class_name", str(c.Kubernetes.StorageClass))
	}
	res := spec.AppendNewBlock("resources", nil).Body()
	attrs(res, "requests", literalMap(map[string]string{"storage": c.Kubernetes.HomeSize}))
	lc := r.AppendNewBlock("lifecycle", nil).Body()
	attrs(lc, "ignore_changes", w.expr("all"))
	b.AppendNewline()
}

func (w *writer) deployment(b *hclwrite.Body, c *config.Config) {
	k := c.Kubernetes
	r := b.AppendNewBlock("resource", []string{"kubernetes_deployment", "workspace"}).Body()
	comment(r,
		"One pod while the workspace runs, none while it is stopped. A create",
		"waits for the pod (bounded by the progress deadline): an image that",
		"cannot be pulled or a pod that cannot be scheduled fails the build.",
		"A start does too with provider 2.x; 1.13.4 may end its wait before",
		"the controller has seen the update.")
	attrs(r, "wait_for_rollout", lit(cty.True))
	to := r.AppendNewBlock("timeouts", nil).Body()
	backstop := strconv.Itoa(k.StartTimeoutSeconds+60) + "s"
	attrs(to, "create", str(backstop), "update", str(backstop))
	w.metadata(r, c, `"coder-${local.owner}-${local.workspace}"`, "local.workspace_labels")
	spec := r.AppendNewBlock("spec", nil).Body()
	attrs(spec,
		"replicas", w.expr("data.coder_workspace.me.start_count"),
		"progress_deadline_seconds", num(k.StartTimeoutSeconds))
	sel := spec.AppendNewBlock("selector", nil).Body()
	attrs(sel, "match_labels", w.expr("local.selector_labels"))
	st := spec.AppendNewBlock("strategy", nil).Body()
	comment(st, "One pod at a time owns the home volume.")
	attrs(st, "type", str("Recreate"))
	tpl := spec.AppendNewBlock("template", nil).Body()
	tm := tpl.AppendNewBlock("metadata", nil).Body()
	attrs(tm, "labels", w.expr("local.workspace_labels"))
	comment(tm,
		"A new pod template on every build: with strategy Recreate, a start's",
		"pod is made only once the stopped one has ended (a terminating pod",
		"still counts), so two pods never share the home volume or the ports.")
	build := `{ "` + BuildAnnotation + `" = plantimestamp() }`
	if len(k.Annotations) > 0 {
		build = "merge(local.annotations, " + build + ")"
	}
	attrs(tm, "annotations", w.expr(build))

	pod := tpl.AppendNewBlock("spec", nil).Body()
	attrs(pod,
		"hostname", w.expr("local.workspace"),
		"termination_grace_period_seconds", num(k.TerminationGraceSeconds))
	if k.HostNetwork {
		comment(pod, "The node's network: with it, only this DNS policy keeps the cluster's DNS.")
		attrs(pod, "host_network", lit(cty.True), "dns_policy", str("ClusterFirstWithHostNet"))
	}
	if k.ServiceAccount != "" {
		attrs(pod, "service_account_name", str(k.ServiceAccount))
	}
	if len(k.NodeSelector) > 0 {
		attrs(pod, "node_selector", literalMap(k.NodeSelector))
	}
	sc := pod.AppendNewBlock("security_context", nil).Body()
	attrs(sc, "run_as_user", num(workspaceUID), "fs_group", num(workspaceUID), "run_as_non_root", lit(cty.True))
	if k.ImagePullSecret != "" {
		ps := pod.AppendNewBlock("image_pull_secrets", nil).Body()
		attrs(ps, "name", str(k.ImagePullSecret))
	}
	for _, t := range k.Tolerations {
		tb := pod.AppendNewBlock("toleration", nil).Body()
		attrs(tb, "key", str(t.Key), "operator", str(t.Operator))
		if t.Value != "" {
			attrs(tb, "value", str(t.Value))
		}
		if t.Effect != "" {
			attrs(tb, "effect", str(t.Effect))
		}
		if t.Seconds != nil {
			attrs(tb, "toleration_seconds", str(strconv.Itoa(*t.Seconds)))
		}
	}

	ct := pod.AppendNewBlock("container", nil).Body()
	attrs(ct,
		"name", str(k8sContainer),
		"image", str(c.Image.Ref),
	)
	if k.ImagePullPolicy != "" {
		attrs(ct, "image_pull_policy", str(k.ImagePullPolicy))
	}
	attrs(ct,
		"command", lit(cty.ListVal([]cty.Value{cty.StringVal(images.Entrypoint[0]), cty.StringVal(images.Entrypoint[1])})))
	env := ct.AppendNewBlock("dynamic", []string{"env"}).Body()
	attrs(env, "for_each", w.expr("local.container_env"))
	ec := env.AppendNewBlock("content", nil).Body()
	attrs(ec, "name", w.expr("env.key"), "value", w.expr("env.value"))
	if limits, requests := containerLimits(c), containerRequests(c); len(limits) > 0 || len(requests) > 0 {
		res := ct.AppendNewBlock("resources", nil).Body()
		if len(limits) > 0 {
			attrs(res, "limits", literalMap(limits))
		}
		if len(requests) > 0 {
			attrs(res, "requests", literalMap(requests))
		}
	}
	vm := ct.AppendNewBlock("volume_mount", nil).Body()
	attrs(vm, "name", str(k8sHomeVolume), "mount_path", str(HomeDir))

	vol := pod.AppendNewBlock("volume", nil).Body()
	attrs(vol, "name", str(k8sHomeVolume))
	pvc := vol.AppendNewBlock("persistent_volume_claim", nil).Body()
	attrs(pvc, "claim_name", w.expr("kubernetes_persistent_volume_claim.home.metadata[0].name"))
	b.AppendNewline()
}

// object is an HCL object with quoted keys in sorted order.
func object(items map[string]hclwrite.Tokens) hclwrite.Tokens {
	var out []hclwrite.ObjectAttrTokens
	for _, k := range slices.Sorted(maps.Keys(items)) {
		out = append(out, hclwrite.ObjectAttrTokens{Name: str(k), Value: items[k]})
	}
	return hclwrite.TokensForObject(out)
}

// literalMap is an object of literal strings with quoted keys, sorted.
func literalMap(m map[string]string) hclwrite.Tokens {
	items := map[string]hclwrite.Tokens{}
	for k, v := range m {
		items[k] = str(v)
	}
	return object(items)
}
