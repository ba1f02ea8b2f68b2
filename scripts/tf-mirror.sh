#!/usr/bin/env bash
# Builds the Terraform providers the template needs from the Go module proxy
# into a filesystem mirror, and writes a Terraform CLI config that points
# `terraform init` at it. Terraform's registry is not reachable here; the Go
# module proxy is.
#
#   scripts/tf-mirror.sh [DIR]     (default: .cache/tf-mirror)
#
# Result:
#   DIR/providers/registry.terraform.io/<ns>/<type>/<version>/<os>_<arch>/terraform-provider-<type>_v<version>
#   DIR/terraformrc   (use it as TF_CLI_CONFIG_FILE)
#
# Each provider is labelled with its real release version so the template's
# version constraints are the ones a Coder deployment resolves:
#   coder/coder        2.20.0  github.com/coder/terraform-provider-coder/v2 v2.20.0
#   kreuzwerker/docker 4.6.0   github.com/kreuzwerker/terraform-provider-docker, newest
#                              pseudo-version served (its CHANGELOG's top entry is 4.6.0).
#                              Its go.mod still says module
#                              github.com/terraform-providers/terraform-provider-docker,
#                              so it is built from a helper module with a replace.
#   hashicorp/kubernetes 1.13.4 github.com/hashicorp/terraform-provider-kubernetes v1.13.4,
#                              the only release the proxy serves (2.x has no /v2
#                              module path). The template admits 1.13.4 and 2.x,
#                              which Coder deployments download. The helper module
#                              repeats the provider's own replaces (they do not
#                              apply to a dependency: without them client-go would
#                              be v11.0.0+incompatible) and maps vbom.ml/util, whose
#                              vanity host is gone, to its GitHub home.
# A provider already in the mirror is not built again. The hashes of these
# binaries are not the registry's: never commit a .terraform.lock.hcl made
# against this mirror.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-.cache/tf-mirror}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd -P)
goos=$(go env GOOS)
goarch=$(go env GOARCH)

# build NAMESPACE TYPE VERSION MODULE MODULE_VERSION [GO_MOD_LINE...]
# The GO_MOD_LINEs (replace directives) go into the helper module's go.mod.
build() {
  local ns=$1 type=$2 version=$3 module=$4 modver=$5
  shift 5
  local out="$dir/providers/registry.terraform.io/$ns/$type/$version/${goos}_${goarch}"
  local bin="$out/terraform-provider-${type}_v${version}"
  if [ -x "$bin" ]; then
    echo "tf-mirror: $ns/$type $version already built"
    return
  fi
  echo "tf-mirror: building $ns/$type $version from $module $modver"
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  {
    echo "module coderslots.local/tfmirror"
    echo "go 1.25"
    echo "require $module $modver"
    printf '%s\n' "$@"
  } >"$work/go.mod"
  mkdir -p "$out"
  (cd "$work" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$version" -o "$bin.tmp" "$module")
  mv "$bin.tmp" "$bin"
}

build coder coder 2.20.0 github.com/coder/terraform-provider-coder/v2 v2.20.0
docker=v0.0.0-20260916201441-96d331c98ff4
build kreuzwerker docker 4.6.0 github.com/terraform-providers/terraform-provider-docker $docker \
  "replace github.com/terraform-providers/terraform-provider-docker => github.com/kreuzwerker/terraform-provider-docker $docker"
build hashicorp kubernetes 1.13.4 github.com/hashicorp/terraform-provider-kubernetes v1.13.4 \
  "replace k8s.io/client-go => k8s.io/client-go v0.19.1" \
  "replace k8s.io/cli-runtime => k8s.io/cli-runtime v0.19.1" \
  "replace github.com/go-openapi/spec => github.com/go-openapi/spec v0.19.5" \
  "replace github.com/moby/term => github.com/moby/term v0.0.0-20200507123241-dbdd9cc6608d" \
  "replace vbom.ml/util => github.com/fvbommel/util v0.0.0-20160121211510-db5cfe13f5cc"

cat >"$dir/terraformrc" <<RC
# Written by scripts/tf-mirror.sh: providers come from the local mirror only.
disable_checkpoint = true
provider_installation {
  filesystem_mirror {
    path    = "$dir/providers"
    include = ["registry.terraform.io/coder/coder", "registry.terraform.io/kreuzwerker/docker", "registry.terraform.io/hashicorp/kubernetes"]
  }
}
RC
echo "tf-mirror: ready; TF_CLI_CONFIG_FILE=$dir/terraformrc"
