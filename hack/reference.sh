#!/usr/bin/env bash
# Runs critest against containerd 2.4's OWN CRI plugin on this machine, with
# the same test images, registry mirror, CNI config and sandbox image as
# cri-containerd: the baseline to compare cri-containerd's results (and
# benchmark numbers) with. It starts a separate containerd
# (deploy/containerd-reference-config.toml, socket
# /run/cri-containerd-stack/reference/containerd.sock), runs hack/critest.sh
# with CRITEST_FOCUS (default: every spec), writes _output/reference/, removes
# its pods and images and stops it again.
#
#   hack/reference.sh                     full validation suite
#   CRITEST_FOCUS='Image Manager' hack/reference.sh
#   CRITEST_ARGS='-benchmark ...' hack/reference.sh
#
# Needs the registry (hack/up.sh or `make images`). Do not run it while
# another critest runs: both use host ports 12000-12003.
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../deploy/lib.sh"

REF_CONFIG="${REF_CONFIG:-${REPO_ROOT}/deploy/containerd-reference-config.toml}"
REF_SOCKET="${REF_SOCKET:-${STACK_STATE}/reference/containerd.sock}"
REF_ENDPOINT="unix://${REF_SOCKET}"

registry_up || die "registry ${REGISTRY} is not up (hack/up.sh --no-daemon, or make images)"
write_certs_d "$CERTS_D"
write_cni_conf
mkdir -p "${STACK_STATE}/reference" "${STACK_ROOT}/reference"

ref_crictl() { crictl --runtime-endpoint "$REF_ENDPOINT" --image-endpoint "$REF_ENDPOINT" "$@"; }
# shellcheck disable=SC2317 # called by the EXIT trap
stop_ref() {
	if is_running reference-containerd; then
		ref_crictl --timeout 60s rmp -af >/dev/null 2>&1 || true
		ref_crictl rmi -a >/dev/null 2>&1 || true
	fi
	stop_bg reference-containerd 30
}
trap stop_ref EXIT

start_bg reference-containerd "${STACK_LOG_DIR}/reference-containerd.log" containerd --config "$REF_CONFIG"
wait_for "reference containerd CRI at $REF_ENDPOINT" 60 reference-containerd ref_crictl --timeout 5s info
# Start from an empty image store: critest reuses present images.
ref_crictl rmi -a >/dev/null 2>&1 || true

rc=0
# A baseline, not a gate: its count is what it is (containerd 2.4.2 skips the
# image-volume digest spec that cri-containerd passes).
CRITEST_MIN_PASSED="${CRITEST_MIN_PASSED:-1}" CRITEST_FOCUS="${CRITEST_FOCUS-}" CRI_ENDPOINT="$REF_ENDPOINT" OUTPUT_DIR="${OUTPUT_DIR}/reference" \
	"${REPO_ROOT}/hack/critest.sh" || rc=$?
exit "$rc"
