#!/usr/bin/env bash
# Idempotent install step of `make node-e2e` (hack/node-e2e.sh runs it first):
#
#   1. binaries: kubelet, e2e_node.test, ginkgo (k8s v1.37.2) and crane in
#      $NODE_E2E_BIN, built from the Go module proxy only when one is missing
#      (about 30 min on 2 cores; they never change for a given version);
#   2. the writable k8s source tree ($NODE_E2E_SRC) the builds and the test
#      images need: k8s.io/kubernetes@v1.37.2 from the module cache with
#      go.work/vendor removed and every ./staging replace pointed at the
#      versioned k8s.io/* module (staging/ is not in the module zip);
#   3. the test images [NodeConformance] uses (hack/node-e2e-images.sh), built
#      only when their saved OCI layouts are missing or the recipe changed;
#   4. a plain-HTTP registry on $NODE_E2E_REGISTRY (crane registry serve,
#      started if not up) holding them: pushed only when a digest differs
#      (crane's registry keeps manifests in memory, so after every start).
#
#   hack/node-e2e-install.sh [--binaries-only|--check]
#     --check  exit 0 when the binaries are cached, 1 otherwise (no build)
set -euo pipefail
# shellcheck source=hack/node-e2e-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/node-e2e-lib.sh"

mode="${1:-all}"

binaries_present() {
	local b
	for b in kubelet e2e_node.test ginkgo crane; do
		[[ -x "${NODE_E2E_BIN}/$b" ]] || return 1
	done
}

if [[ "$mode" == --check ]]; then
	binaries_present
	exit
fi

# k8s_tree: prepare $NODE_E2E_SRC unless it is there (stamp file).
k8s_tree() {
	local mod args=() m
	[[ -f "${NODE_E2E_SRC}/.node-e2e-prepared" ]] && return 0
	log "preparing the k8s ${K8S_VERSION} source tree in $NODE_E2E_SRC"
	go mod download "k8s.io/kubernetes@${K8S_VERSION}"
	mod="$(go env GOMODCACHE)/k8s.io/kubernetes@${K8S_VERSION}"
	rm -rf "$NODE_E2E_SRC"
	mkdir -p "$(dirname "$NODE_E2E_SRC")"
	cp -r "$mod" "$NODE_E2E_SRC"
	chmod -R u+w "$NODE_E2E_SRC"
	(
		cd "$NODE_E2E_SRC"
		# vendor/ holds only OWNERS but still switches Go to -mod=vendor.
		rm -rf go.work go.work.sum vendor
		for m in $(sed -n '/^replace (/,/^)/p' go.mod | awk '/=> \.\/staging/{print $1}'); do
			args+=("-replace=${m}=${m}@${K8S_STAGING_VERSION}")
		done
		((${#args[@]})) || die "no ./staging replace directives in k8s go.mod"
		go mod edit "${args[@]}"
	)
	touch "${NODE_E2E_SRC}/.node-e2e-prepared"
}

build_binaries() {
	local ldf="" p
	binaries_present && { log "node e2e binaries cached in $NODE_E2E_BIN"; return 0; }
	k8s_tree
	mkdir -p "$NODE_E2E_BIN"
	# what hack/lib/version.sh would inject: kubelet refuses to look like v0.0.0
	for p in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
		ldf+=" -X ${p}.gitVersion=${K8S_VERSION} -X ${p}.gitMajor=1 -X ${p}.gitMinor=${K8S_MINOR}"
		ldf+=" -X ${p}.gitTreeState=clean -X ${p}.gitCommit=0000000000000000000000000000000000000000"
	done
	export GOFLAGS=-buildvcs=false
	(
		cd "$NODE_E2E_SRC"
		[[ -x "${NODE_E2E_BIN}/kubelet" ]] || { log "building kubelet (slow)"; nice -n 19 go build -mod=mod -p 1 -ldflags "$ldf" -o "${NODE_E2E_BIN}/kubelet" ./cmd/kubelet; }
		[[ -x "${NODE_E2E_BIN}/e2e_node.test" ]] || { log "building e2e_node.test (slow)"; nice -n 19 go test -c -mod=mod -p 1 -ldflags "$ldf" -o "${NODE_E2E_BIN}/e2e_node.test" ./test/e2e_node; }
		# ginkgo: the version pinned by the k8s go.mod
		[[ -x "${NODE_E2E_BIN}/ginkgo" ]] || nice -n 19 go build -mod=mod -p 1 -o "${NODE_E2E_BIN}/ginkgo" github.com/onsi/ginkgo/v2/ginkgo
	)
	[[ -x "${NODE_E2E_BIN}/crane" ]] || GOBIN="$NODE_E2E_BIN" nice -n 19 go install -p 1 "github.com/google/go-containerregistry/cmd/crane@${CRANE_VERSION}"
	"${NODE_E2E_BIN}/kubelet" --version
}

build_binaries
[[ "$mode" == --binaries-only ]] && exit 0

k8s_tree
node_e2e_registry_up
# Build the images when the saved layouts are missing or their recipe changed.
recipe="$(cat "${REPO_ROOT}/hack/node-e2e-images.sh" "${REPO_ROOT}"/test/nodee2e/images/* | sha256sum | cut -c1-16)"
if [[ "$(cat "${NODE_E2E_OCI}/.recipe" 2>/dev/null)" != "$recipe" || ! -s "${NODE_E2E_OCI}/refs.txt" ]]; then
	log "building the node e2e test images (several minutes; log ${NODE_E2E_WORK}/images.log)"
	mkdir -p "$NODE_E2E_WORK"
	REG="$NODE_E2E_REGISTRY" K8S="$NODE_E2E_SRC" W="${NODE_E2E_WORK}/img" CRANE="${NODE_E2E_BIN}/crane" OCI="$NODE_E2E_OCI" \
		bash "${REPO_ROOT}/hack/node-e2e-images.sh" >"${NODE_E2E_WORK}/images.log" 2>&1 ||
		{ tail -30 "${NODE_E2E_WORK}/images.log" >&2; die "building the node e2e images failed"; }
	echo "$recipe" >"${NODE_E2E_OCI}/.recipe"
fi
node_e2e_load_images
