# coder-slots — see README.md.
GO      ?= go
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
RUN_DIR ?= .run
# The workspace image `make image` builds.
IMAGE   ?= coder-slots/workspace:$(VERSION)

.PHONY: build run test lint fuzz bench clean tf-mirror image e2e e2e-kube e2e-module dist

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/slotagent ./agent/cmd/slotagent
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/slotprov ./provision/cmd/slotprov

# The agent with the five slots and the admin panel, on this machine: data
# under .run/, placeholders on 3001–3005, panel on 9000. Ctrl-C stops it.
run: build
	@# o+x: as root, the workspace PostgreSQL runs as user postgres and must reach its data dir
	mkdir -p $(RUN_DIR) && chmod 755 $(RUN_DIR)
	./bin/slotagent run --data-dir $(RUN_DIR)/data

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags e2e ./provision/e2e/

test: lint
	$(GO) test -race -count=1 -timeout 20m ./...

# A real Coder server (built from its Go module) and a real Docker engine
# (Debian's docker.io, started by the test with its own data under
# ~/.cache/coder-slots/e2e): push the template, build a workspace, deploy,
# stop, start; the same workspace on a one-node Kubernetes built here
# (TestKubernetesWorkspace, TestKubernetesCluster: see e2e-kube); then
# Coder's own docker template with the coder-slots module
# (TestModuleWorkspace, slotagent from make dist). Needs root; E2E_RECORD=1
# writes the Docker figures into docs/benchmarks.md. See provision/e2e.
e2e: build tf-mirror dist
	$(GO) test -tags e2e -count=1 -timeout 85m -v ./provision/e2e/

# Coder's own examples/templates/docker with the coder-slots module added
# by one block, slotagent installed from make dist's archives. Needs root.
e2e-module: build tf-mirror dist
	$(GO) test -tags e2e -count=1 -timeout 60m -v -run TestModuleWorkspace ./provision/e2e/

# The workspace on a one-node Kubernetes built here (its binaries from the
# Go module proxy, cached under ~/.cache/coder-slots/e2e; Debian's
# containerd), after Docker has built the image and stopped. Needs root.
e2e-kube: build tf-mirror
	$(GO) test -tags e2e -count=1 -timeout 60m -v -run TestKubernetes ./provision/e2e/

# The fuzz targets, each for FUZZTIME (go test -fuzz takes one target per
# run); make test runs their seed corpora. A finding is written under the
# package's testdata/fuzz/ and becomes a regression test there.
FUZZTIME ?= 30s
FUZZ_TARGETS := ./agent/relay:FuzzRelayRequest ./agent/relay:FuzzRelayResponse ./agent/gitpush:FuzzParseUpdates
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
	  echo "fuzz $${t#*:} ($(FUZZTIME))"; \
	  $(GO) test -run='^$$' -fuzz="^$${t#*:}$$" -fuzztime=$(FUZZTIME) $${t%%:*}; \
	done

# Release archives of slotagent for the coder-slots module (static,
# version-stamped, linux amd64 and arm64) and their SHA256SUMS, in dist/:
# the layout the module's install_url expects.
dist:
	scripts/dist.sh $(VERSION) dist

# Benchmarks print numbers; they never run in make test.
bench:
	$(GO) run ./agent/cmd/slotbench

# The Terraform providers the templates need (coder/coder, kreuzwerker/docker,
# hashicorp/kubernetes), built from the Go module proxy into the mirror under
# .cache/tf-mirror, with the CLI config .cache/tf-mirror/terraformrc. Skips
# providers already built.
tf-mirror:
	scripts/tf-mirror.sh

# The workspace image (images/Dockerfile), where a Docker engine runs.
# GO_IMAGE= and NODE_IMAGE= replace its base images (a registry mirror, or
# bases made locally); empty: the Dockerfile's defaults.
GO_IMAGE   ?=
NODE_IMAGE ?=
# WITH_GO=1 puts the Go toolchain in the image, so slots deploy Go modules.
WITH_GO    ?=
image:
	@docker info >/dev/null 2>&1 || { echo "make image: no Docker engine answers here (docker info fails)"; exit 1; }
	docker build -f images/Dockerfile --build-arg VERSION=$(VERSION) \
	  $(if $(GO_IMAGE),--build-arg GO_IMAGE=$(GO_IMAGE)) $(if $(NODE_IMAGE),--build-arg NODE_IMAGE=$(NODE_IMAGE)) \
	  $(if $(WITH_GO),--build-arg WITH_GO=$(WITH_GO)) \
	  -t $(IMAGE) .

clean:
	rm -rf bin dist $(RUN_DIR)
