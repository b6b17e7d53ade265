#!/usr/bin/env bash
# The fault campaign (`make chaos`; CHAOS_ARGS=--short is the CI form):
# builds cri-containerd, the cnifault CNI wrapper and the campaign driver
# into _output/chaos/, then runs test/chaos as root. The campaign starts and
# owns its own containerd, cri-containerd, CNI network (crichaos0,
# 10.233.0.0/16), registry proxy and log tmpfs; only the stack's registry
# (the test images) is shared. See test/chaos/main.go for the flags.
#
#   hack/chaos.sh [--short] [--outage] [flags...]
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../deploy/lib.sh"
cd "$REPO_ROOT"

[[ "$(id -u)" == 0 ]] || die "needs root"
command -v containerd >/dev/null || die "containerd not installed (deploy/install.sh)"
[[ -x "${CNI_BIN_DIR}/bridge" ]] || die "CNI plugins missing in ${CNI_BIN_DIR} (deploy/install.sh)"
registry_up || die "registry ${REGISTRY} is not up (hack/up.sh --no-daemon, or make images)"

out="${OUTPUT_DIR}/chaos"
mkdir -p "$out"
rev="$(git rev-parse --short=12 HEAD 2>/dev/null || true)"
log "building cri-containerd, cnifault and the campaign into $out"
go build -ldflags "-X github.com/cri-containerd/cri-containerd/version.Revision=${rev}" -o "$out/cri-containerd" ./cmd/cri-containerd
go build -o "$out/cnifault" ./test/chaos/cnifault
go build -o "$out/chaos" ./test/chaos
exec "$out/chaos" --daemon-bin "$out/cri-containerd" --cnifault-bin "$out/cnifault" \
	--cni-bin-dir "$CNI_BIN_DIR" --registry "$REGISTRY" --out "$out" "$@"
