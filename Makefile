# cri-containerd: build, local runtime stack and tests.
# Run as root for everything but build/unit/clean. See hack/*.sh and deploy/lib.sh.

GO ?= go
OUTPUT_DIR := _output
BIN := $(OUTPUT_DIR)/cri-containerd

.PHONY: all build static image release up down status test unit e2e critest images verify-images reference compat benchmark node-e2e node-e2e-install install clean

all: build

## build: compile the daemon into _output/cri-containerd
build:
	@mkdir -p $(OUTPUT_DIR)
	$(GO) build -ldflags "-X github.com/cri-containerd/cri-containerd/version.Revision=$$(git rev-parse --short=12 HEAD 2>/dev/null)" \
		-o $(BIN) ./cmd/cri-containerd
	CGO_ENABLED=0 $(GO) build -o $(OUTPUT_DIR)/cri-containerd-log-writer ./cmd/cri-containerd-log-writer

REVISION := $(shell git rev-parse --short=12 HEAD 2>/dev/null)
STATIC_BIN := $(OUTPUT_DIR)/static/cri-containerd
STATIC_LOG_WRITER := $(OUTPUT_DIR)/static/cri-containerd-log-writer
IMAGE_TAG ?= $(or $(REVISION),dev)
REGISTRY ?= 127.0.0.1:5000

## static: the daemon as a static binary (CGO_ENABLED=0), for the image and the release tarball
static:
	@mkdir -p $(OUTPUT_DIR)/static
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w -X github.com/cri-containerd/cri-containerd/version.Revision=$(REVISION)" \
		-o $(STATIC_BIN) ./cmd/cri-containerd
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o $(STATIC_LOG_WRITER) ./cmd/cri-containerd-log-writer

## image: the cri-containerd container image (static binary, iptables, busybox, CA bundle; go-containerregistry,
## no container engine) pushed to $(REGISTRY) as cri-containerd/cri-containerd:$(IMAGE_TAG) and :latest; see _output/image.json
image: static
	$(GO) run ./deploy/image --binary $(STATIC_BIN) --log-writer $(STATIC_LOG_WRITER) --registry $(REGISTRY) --tag $(IMAGE_TAG) --out $(OUTPUT_DIR)/image.json

## release: _output/release/cri-containerd-<version>.linux-amd64.tar.gz (+ .sha256): static binary, systemd units,
## default config, CNI example, DaemonSet manifests, install doc, SHA256SUMS (hack/release.sh)
release: static
	hack/release.sh --binary $(STATIC_BIN) --log-writer $(STATIC_LOG_WRITER)

## up: install deps, start containerd + registry (+ test images) + cri-containerd, run the demo
up:
	hack/up.sh

## down: stop what `make up` started (by PID file)
down:
	hack/down.sh

## status: show the stack's processes and the e2e environment contract
status:
	hack/status.sh

## test: go vet, unit tests, e2e tests and critest against the running stack (started if needed)
test:
	hack/test.sh all

## unit: go vet + unit tests (no root, no stack)
unit:
	hack/test.sh unit

## e2e: stack up + go test ./test/e2e/...
e2e:
	hack/test.sh e2e

## critest: stack up + critest (CRITEST_FOCUS / CRITEST_SKIP select specs)
critest:
	hack/test.sh critest

## images: start the local registry if needed, build and push the test images
images:
	deploy/registry.sh up

## verify-images: smoke-test the test images and the registry mirror through containerd (ctr)
verify-images:
	hack/verify-images.sh

## reference: run critest against containerd's own CRI plugin here (baseline; CRITEST_FOCUS selects)
reference:
	hack/reference.sh

## compat: critest against cri-containerd on private containerd 1.6 and 1.7 (COMPAT_VERSIONS=1.6|1.7|all)
compat:
	hack/compat.sh $(or $(COMPAT_VERSIONS),all)

## benchmark: critest -benchmark against a private cri-containerd and containerd's built-in CRI; table in _output/benchmark.txt
benchmark:
	hack/benchmark.sh

## node-e2e: Kubernetes node e2e [NodeConformance] (k8s v1.37.2 kubelet + e2e_node.test) against a private
## cri-containerd and containerd 2.4.2's built-in CRI; table in _output/node-e2e/table.txt (hack/node-e2e.sh:
## NODE_E2E_QUICK=1 the quick subset, NODE_E2E_FOCUS, NODE_E2E_TARGETS=cri-containerd|reference)
node-e2e:
	hack/node-e2e.sh

## node-e2e-install: build kubelet/e2e_node.test/ginkgo/crane and the test images when missing (/opt/node-e2e)
node-e2e-install:
	hack/node-e2e-install.sh

## chaos: fault campaign (20 daemon kill -9, 5 containerd restarts, CNI/log/registry faults during churn); CHAOS_ARGS=--short|--outage
.PHONY: chaos
chaos:
	hack/chaos.sh $(CHAOS_ARGS)

## fuzz: go test -fuzz targets (FUZZTIME each, default 20s), then the live request fuzzer against a private daemon on the stack (FUZZ_REQUESTS, default 2000; FUZZ_SEED; FUZZ_ONLY=RPC,RPC; a failed run keeps goroutine dumps and the daemon log in FUZZ_KEEP_DIR, default /tmp/crifuzz-SEED-TIME)
.PHONY: fuzz
fuzz: build
	for t in server:FuzzValidateRequest spec:FuzzContainerSpecOpts spec:FuzzSandboxSpecOpts config:FuzzLoadFile; do \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(or $(FUZZTIME),20s) -fuzzminimizetime $(or $(FUZZMINIMIZETIME),1s) ./$${t%%:*}/ || exit 1; \
	done
	bash -c 'set -a; source <(bash -c "source deploy/lib.sh; stack_env"); set +a; \
		CRI_FUZZ_REQUESTS=$(or $(FUZZ_REQUESTS),2000) CRI_FUZZ_SEED=$(FUZZ_SEED) CRI_FUZZ_WORKERS=$(or $(FUZZ_WORKERS),4) CRI_FUZZ_MAX_DURATION=$(FUZZ_MAX_DURATION) CRI_FUZZ_ONLY=$(FUZZ_ONLY) CRI_FUZZ_KEEP_DIR=$(FUZZ_KEEP_DIR) $(GO) test -count=1 -v -timeout 0 -run TestLiveFuzz ./test/fuzz/'

## install: containerd, runc, CNI plugins, crictl, critest, crane (idempotent)
install:
	deploy/install.sh

## clean: remove build outputs (not the stack's state; `make down` first)
clean:
	rm -rf $(OUTPUT_DIR)
