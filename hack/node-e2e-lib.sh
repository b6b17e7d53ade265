# shellcheck shell=bash
# hack/node-e2e-lib.sh: settings and helpers of `make node-e2e`
# (hack/node-e2e.sh, hack/node-e2e-install.sh). Sources deploy/lib.sh. Every
# setting can be overridden from the environment.
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../deploy/lib.sh"

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
K8S_MINOR="${K8S_MINOR:-37}"
K8S_STAGING_VERSION="${K8S_STAGING_VERSION:-v0.37.2}"
CRANE_VERSION="${CRANE_VERSION:-v0.22.1}"

# Cache: binaries, k8s source tree, saved images, registry blobs. Survives
# runs; delete it to rebuild everything.
NODE_E2E_DIR="${NODE_E2E_DIR:-/opt/node-e2e}"
NODE_E2E_BIN="${NODE_E2E_BIN:-${NODE_E2E_DIR}/bin}"
NODE_E2E_SRC="${NODE_E2E_SRC:-${NODE_E2E_DIR}/src/k8s}"
NODE_E2E_OCI="${NODE_E2E_OCI:-${NODE_E2E_DIR}/images/oci}"
NODE_E2E_WORK="${NODE_E2E_WORK:-${NODE_E2E_DIR}/work}"
# The test images' registry (plain HTTP), its own: KUBE_TEST_REPO_LIST maps
# every upstream image name of the suite to it (test/nodee2e/repo-list.yaml).
NODE_E2E_REGISTRY="${NODE_E2E_REGISTRY:-127.0.0.1:5055}"

node_e2e_crane() { "${NODE_E2E_BIN}/crane" "$@"; }
node_e2e_registry_ok() { curl -fsS -o /dev/null "http://${NODE_E2E_REGISTRY}/v2/" 2>/dev/null; }

# node_e2e_registry_up: start the registry (blobs on disk) unless it answers.
node_e2e_registry_up() {
	node_e2e_registry_ok && return 0
	mkdir -p "${NODE_E2E_DIR}/registry"
	start_bg node-e2e-registry "${STACK_LOG_DIR}/node-e2e-registry.log" \
		"${NODE_E2E_BIN}/crane" registry serve --address "$NODE_E2E_REGISTRY" --disk "${NODE_E2E_DIR}/registry"
	wait_for "node e2e registry at $NODE_E2E_REGISTRY" 30 node-e2e-registry node_e2e_registry_ok
}

# node_e2e_load_images: push every saved OCI layout whose digest the registry
# does not serve (crane's registry keeps manifests in memory only).
node_e2e_load_images() {
	local d r want got n=0
	[[ -s "${NODE_E2E_OCI}/refs.txt" ]] || die "no saved node e2e images in $NODE_E2E_OCI (hack/node-e2e-install.sh)"
	while read -r d r want; do
		got="$(node_e2e_crane digest --insecure "${NODE_E2E_REGISTRY}/$r" 2>/dev/null || true)"
		[[ "$got" == "$want" ]] && continue
		node_e2e_crane push --insecure "${NODE_E2E_OCI}/$d" "${NODE_E2E_REGISTRY}/$r" >/dev/null 2>&1 || die "pushing $r failed"
		got="$(node_e2e_crane digest --insecure "${NODE_E2E_REGISTRY}/$r")"
		[[ "$got" == "$want" ]] || die "${NODE_E2E_REGISTRY}/$r: digest $got, want $want"
		n=$((n + 1))
	done <"${NODE_E2E_OCI}/refs.txt"
	log "node e2e images in ${NODE_E2E_REGISTRY}: $(wc -l <"${NODE_E2E_OCI}/refs.txt") ($n pushed now)"
}
