#!/usr/bin/env bash
# Builds the release tarball under _output/release/:
#   cri-containerd-<version>.linux-amd64.tar.gz (laid out relative to /) and
#   <tarball>.sha256. Contents: the static daemon, the systemd units, the
#   default config, an example CNI config, the DaemonSet manifests, the
#   install doc (deploy/release/INSTALL.md) and SHA256SUMS of every file.
# The tarball is deterministic (sorted names, uid/gid 0, mtime 0).
#
#   hack/release.sh [--binary PATH] [--log-writer PATH] [--out DIR]
#   (default: builds the static binary with `make static`)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bin="" writer="" out="_output/release"
while [[ $# -gt 0 ]]; do
	case "$1" in
	--binary) bin="$2"; shift 2 ;;
	--log-writer) writer="$2"; shift 2 ;;
	--out) out="$2"; shift 2 ;;
	*) echo "usage: $0 [--binary PATH] [--log-writer PATH] [--out DIR]" >&2; exit 2 ;;
	esac
done
if [[ -z "$bin" ]]; then
	make --no-print-directory static
	bin=_output/static/cri-containerd
fi
[[ -n "$writer" ]] || writer="$(dirname "$bin")/cri-containerd-log-writer"
[[ -x "$writer" ]] || { echo "$writer missing (make static builds it)" >&2; exit 1; }

# "cri-containerd v0.1.0-dev (CRI v1) revision abc" -> v0.1.0-dev-abc
read -r _ ver _ _ _ rev _ < <("$bin" version; echo)
version="${ver}${rev:+-$rev}"
name="cri-containerd-${version}.linux-amd64"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
install -D -m 0755 "$bin" "$stage/usr/local/bin/cri-containerd"
# The shim runs it as each container's log writer when it is next to the daemon.
install -D -m 0755 "$writer" "$stage/usr/local/bin/cri-containerd-log-writer"
install -D -m 0644 deploy/systemd/cri-containerd.service "$stage/etc/systemd/system/cri-containerd.service"
install -D -m 0644 deploy/systemd/cri-containerd.socket "$stage/etc/systemd/system/cri-containerd.socket"
mkdir -p "$stage/etc/cri-containerd"
"$bin" config default >"$stage/etc/cri-containerd/config.toml"
chmod 0644 "$stage/etc/cri-containerd/config.toml"
install -D -m 0644 deploy/release/10-cri-containerd.conflist "$stage/etc/cni/net.d/10-cri-containerd.conflist"
mkdir -p "$stage/opt/cri-containerd/deploy/kubernetes"
install -m 0644 deploy/kubernetes/*.yaml deploy/kubernetes/README.md "$stage/opt/cri-containerd/deploy/kubernetes/"
install -m 0644 deploy/release/INSTALL.md "$stage/opt/cri-containerd/INSTALL.md"
(cd "$stage" && find . -type f ! -name SHA256SUMS | sed 's|^\./||' | LC_ALL=C sort | xargs sha256sum) \
	>"$stage/opt/cri-containerd/SHA256SUMS"

mkdir -p "$out"
tarball="$out/$name.tar.gz"
find "$stage" -mindepth 1 -exec touch -h -d @0 {} +
tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf - usr etc opt | gzip -n -9 >"$tarball.tmp"
mv -f "$tarball.tmp" "$tarball"
(cd "$out" && sha256sum "$name.tar.gz" >"$name.tar.gz.sha256")
echo "$tarball"
