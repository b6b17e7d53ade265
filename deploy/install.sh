#!/usr/bin/env bash
# Idempotent installer for the runtime stack cri-containerd drives:
# containerd v2.4.2 (+ runc v2 shim, ctr), runc (Debian's 1.1.5 and v1.5.3 built
# with seccomp into $RUNC_DIR), CNI plugins v1.10.0, crictl / critest v1.37.0,
# crane v0.22.1, and the host tools the tests use.
# Everything comes from the Go module proxy and Debian apt.
set -euo pipefail

CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.4.2}"
CNI_PLUGINS_VERSION="${CNI_PLUGINS_VERSION:-v1.10.0}"
CRI_TOOLS_VERSION="${CRI_TOOLS_VERSION:-v1.37.0}"
CRANE_VERSION="${CRANE_VERSION:-v0.22.1}"
RUNC_VERSION="${RUNC_VERSION:-v1.5.3}"
# runc built from source goes to its own directory, never on the PATH: the
# Debian runc in /usr/sbin stays what a bare "runc" means (and a fallback the
# stack can be pointed at, RUNC_BINARY in deploy/lib.sh).
RUNC_DIR="${RUNC_DIR:-/opt/cri-containerd/bin}"
BIN_DIR="${BIN_DIR:-/usr/local/bin}"
CNI_BIN_DIR="${CNI_BIN_DIR:-/opt/cni/bin}"
STAMP_DIR="${STAMP_DIR:-/var/lib/cri-containerd-install}"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
export PATH="/usr/local/go/bin:${PATH}"

log() { echo "install: $*" >&2; }
mkdir -p "$STAMP_DIR" "$BIN_DIR" "$CNI_BIN_DIR" "$RUNC_DIR"

stamp_ok() { [[ -f "$STAMP_DIR/$1" && "$(cat "$STAMP_DIR/$1")" == "$2" ]]; }
stamp_set() { echo "$2" >"$STAMP_DIR/$1"; }

# --- Debian packages ----------------------------------------------------------
# libseccomp-dev, pkg-config and gcc build runc with seccomp (cgo).
APT_PKGS=(runc libseccomp-dev pkg-config gcc libc6-dev iptables iproute2 util-linux psmisc procps curl ca-certificates)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "apt-get install ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

gobuild() { # gobuild <stamp> <version> <cmd...>
  local name="$1" ver="$2"; shift 2
  if stamp_ok "$name" "$ver"; then return 0; fi
  log "building $name $ver"
  "$@"
  stamp_set "$name" "$ver"
}

# --- containerd ---------------------------------------------------------------
gobuild containerd "$CONTAINERD_VERSION" env GOBIN="$BIN_DIR" go install -tags no_btrfs \
  "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
  "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
  "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION"

# --- runc (built: idmapped mounts for user namespaces; Debian's 1.1.5 has none) ---
# Built to a temporary name and renamed: a shim exec'ing it never sees half a file.
build_runc() {
  local tmp
  tmp="$(mktemp -d)"
  env CGO_ENABLED=1 GOBIN="$tmp" go install -tags seccomp "github.com/opencontainers/runc@$RUNC_VERSION"
  "$tmp/runc" --version >/dev/null
  install -m 0755 "$tmp/runc" "$RUNC_DIR/.runc.new"
  mv -f "$RUNC_DIR/.runc.new" "$RUNC_DIR/runc"
  rm -rf "$tmp"
}
[[ -x "$RUNC_DIR/runc" ]] || rm -f "$STAMP_DIR/runc"
gobuild runc "$RUNC_VERSION" build_runc

# --- CNI plugins ---------------------------------------------------------------
cni_pkgs=()
for p in main/bridge main/loopback main/host-device main/ptp ipam/host-local meta/portmap meta/bandwidth meta/firewall meta/tuning; do
  cni_pkgs+=("github.com/containernetworking/plugins/plugins/$p@$CNI_PLUGINS_VERSION")
done
gobuild cni-plugins "$CNI_PLUGINS_VERSION" env GOBIN="$CNI_BIN_DIR" go install "${cni_pkgs[@]}"

# --- crictl, crane ---------------------------------------------------------------
gobuild crictl "$CRI_TOOLS_VERSION" env GOBIN="$BIN_DIR" go install \
  -ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION" \
  "sigs.k8s.io/cri-tools/cmd/crictl@$CRI_TOOLS_VERSION"
gobuild crane "$CRANE_VERSION" env GOBIN="$BIN_DIR" go install \
  "github.com/google/go-containerregistry/cmd/crane@$CRANE_VERSION"

# --- critest (a Go test binary: build it with go test -c) ------------------------
build_critest() {
  local dir src
  dir="$(mktemp -d)"
  (cd "$dir" && go mod init tmp >/dev/null 2>&1 && go mod download -json "sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION" >mod.json)
  src="$(sed -n 's/.*"Dir": "\(.*\)".*/\1/p' "$dir/mod.json")"
  cp -r "$src" "$dir/cri-tools"
  chmod -R u+w "$dir/cri-tools"
  (cd "$dir/cri-tools" && go test -c -o "$BIN_DIR/critest" \
    -ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION" ./cmd/critest)
  rm -rf "$dir"
}
gobuild critest "$CRI_TOOLS_VERSION" build_critest

log "done: $(containerd --version 2>/dev/null | head -1); Debian $(runc --version | head -1); $RUNC_DIR/$("$RUNC_DIR/runc" --version | head -1); critest and crictl in $BIN_DIR"
