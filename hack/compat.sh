#!/usr/bin/env bash
# Runs critest against cri-containerd driving an OLD containerd (`make compat`):
#
#   hack/compat.sh [1.6|1.7|all]     (default: all)
#
# For each version it starts a private containerd (own config, root, state,
# gRPC and ttrpc sockets; CRI plugin, NRI and metrics off) and a private
# cri-containerd (built from this tree into _output/compat/cri-containerd)
# talking to it, checks that a pod runs on the version's own shim, runs
# hack/critest.sh (CRITEST_FOCUS / CRITEST_SKIP / CRITEST_MIN_PASSED apply)
# against that daemon, then removes its pods, stops both processes by PID,
# unmounts what is left under its directories and deletes them. The stack
# from hack/up.sh is not touched, but its registry (test images), hosts.toml
# tree and CNI config are used: start it first (hack/up.sh --no-daemon).
#
# The old daemons live in $COMPAT_CACHE (fetched on first use, never
# installed on the host):
#   1.6  Debian 12's containerd package (1.6.20): `apt-get download` +
#        `dpkg-deb -x`; it carries its own containerd-shim-runc-v2.
#   1.7  built from the Go module proxy ($COMPAT_V17, default v1.7.35).
#        `go install ...@v1.7.x` refuses the module (its go.mod has an exclude
#        directive), so the module is downloaded and built in a copy.
# The version's bin directory comes first on containerd's PATH, so it starts
# its own shim. Logs and critest reports: _output/compat/<version>/.
# COMPAT_E2E=1 also runs the e2e tests (test/e2e) against each version;
# COMPAT_CRITEST=0 skips critest.
#
# critest uses host ports 12000-12003: do not run it beside another critest.
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../deploy/lib.sh"

COMPAT_CACHE="${COMPAT_CACHE:-/var/cache/cri-containerd-compat}"
COMPAT_V17="${COMPAT_V17:-v1.7.35}"
COMPAT_OUT="${OUTPUT_DIR}/compat"
COMPAT_CRITEST="${COMPAT_CRITEST:-1}"  # 0: skip critest
COMPAT_E2E="${COMPAT_E2E:-0}"          # 1: also run go test ./test/e2e/... against the version
COMPAT_E2E_SKIP="${COMPAT_E2E_SKIP:-}" # go test -skip regexp
# A private build of the daemon: the stack's daemon runs _output/cri-containerd.
CRI_CONTAINERD_BIN="${COMPAT_BIN:-${COMPAT_OUT}/cri-containerd}"

case "${1:-all}" in
1.6 | 1.7) versions=("$1") ;;
all) versions=(1.6 1.7) ;;
*) die "usage: $0 [1.6|1.7|all]" ;;
esac

[[ "$(id -u)" == 0 ]] || die "needs root"
registry_up || die "registry ${REGISTRY} is not up (hack/up.sh --no-daemon, or make images)"
command -v critest >/dev/null || die "critest not installed (run deploy/install.sh)"
[[ -d "$CERTS_D" && -s "${CNI_CONF_DIR}/10-cri-containerd.conflist" ]] ||
	die "no hosts.toml tree / CNI config (hack/up.sh --no-daemon)"
mkdir -p "$COMPAT_CACHE" "$COMPAT_OUT"
# One compat run at a time.
exec 9>"${COMPAT_CACHE}/compat.lock"
flock -n 9 || die "another hack/compat.sh is running"

# ---------------------------------------------------------------------------
# Fetching the old containerd builds.

fetch_16() {
	local dir="${COMPAT_CACHE}/1.6" deb debs
	[[ -x "${dir}/bin/containerd" && -x "${dir}/bin/containerd-shim-runc-v2" ]] && return 0
	log "fetching Debian's containerd package into $dir (not installing it)"
	mkdir -p "$dir"
	if ! (cd "$dir" && apt-get download containerd >/dev/null 2>&1); then
		apt-get update >/dev/null
		(cd "$dir" && apt-get download containerd >/dev/null) || die "apt-get download containerd failed"
	fi
	debs=("$dir"/containerd_*.deb)
	deb="${debs[-1]}"
	rm -rf "${dir:?}/root" "${dir:?}/bin"
	dpkg-deb -x "$deb" "${dir}/root"
	mkdir -p "${dir}/bin"
	cp "${dir}/root/usr/bin/containerd" "${dir}/root/usr/bin/containerd-shim-runc-v2" "${dir}/root/usr/bin/ctr" "${dir}/bin/"
}

fetch_17() {
	local dir="${COMPAT_CACHE}/1.7" src mod
	if [[ -x "${dir}/bin/containerd" && -x "${dir}/bin/containerd-shim-runc-v2" ]] &&
		"${dir}/bin/containerd" --version | grep -q " ${COMPAT_V17#v}"; then
		return 0
	fi
	log "building containerd ${COMPAT_V17} into ${dir}/bin (a few minutes)"
	mkdir -p "$dir"
	mod="$(go mod download -json "github.com/containerd/containerd@${COMPAT_V17}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
	[[ -d "$mod" ]] || die "go mod download github.com/containerd/containerd@${COMPAT_V17} failed"
	src="${dir}/src"
	rm -rf "$src"
	cp -r "$mod" "$src"
	chmod -R u+w "$src"
	(cd "$src" && go build -tags no_btrfs -o "${dir}/bin/" ./cmd/containerd ./cmd/containerd-shim-runc-v2 ./cmd/ctr) ||
		die "building containerd ${COMPAT_V17} failed"
}

# ---------------------------------------------------------------------------
# One version.

V_ROOT="" V_STATE="" V_PIDS=""

# Config for containerd 1.6/1.7 (config version 2).
write_containerd_config() {
	local ver="$1" f="$2"
	cat >"$f" <<EOF
# Private containerd ${ver} for hack/compat.sh
version = 2
root = "${V_ROOT}/containerd"
state = "${V_STATE}/containerd"
imports = []
disabled_plugins = ["io.containerd.grpc.v1.cri"]
oom_score = 0

[grpc]
  address = "${V_STATE}/containerd.sock"

[ttrpc]
  address = "${V_STATE}/containerd.sock.ttrpc"

[debug]
  address = ""
  level = "info"

[metrics]
  address = ""

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "${V_ROOT}/opt"
EOF
	if [[ "$ver" != 1.6 ]]; then # 1.6 has no NRI plugin
		cat >>"$f" <<EOF
  [plugins."io.containerd.nri.v1.nri"]
    disable = true
EOF
	fi
}

v_ctr() { "${COMPAT_CACHE}/${1}/bin/ctr" --address "${V_STATE}/containerd.sock" -n "$CONTAINERD_NAMESPACE" "${@:2}"; }
# shellcheck disable=SC2317 # called through wait_for
v_crictl() { crictl --runtime-endpoint "unix://${V_STATE}/cri.sock" --image-endpoint "unix://${V_STATE}/cri.sock" "$@"; }

# Tear down what run_version started (safe to call twice).
teardown() {
	local ver="$1" tasks t pid m
	[[ -n "$V_STATE" ]] || return 0
	if PID_DIR="$V_PIDS" is_running cri-containerd; then
		timeout 180 crictl --runtime-endpoint "unix://${V_STATE}/cri.sock" --timeout 60s rmp -af >/dev/null 2>&1 ||
			log "WARNING: crictl rmp -af failed"
	fi
	PID_DIR="$V_PIDS" stop_bg cri-containerd 30
	if PID_DIR="$V_PIDS" is_running containerd; then
		tasks="$(v_ctr "$ver" tasks ls -q 2>/dev/null || true)"
		if [[ -n "$tasks" ]]; then
			log "killing $(wc -w <<<"$tasks") leftover task(s)"
			for t in $tasks; do v_ctr "$ver" tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; done
			for t in $tasks; do
				for _ in 1 2 3 4 5 6 7 8 9 10; do
					v_ctr "$ver" tasks delete "$t" >/dev/null 2>&1 && break
					sleep 0.5
				done
			done
		fi
	fi
	PID_DIR="$V_PIDS" stop_bg containerd 30
	# Shims of this containerd (their -address is our private socket) that
	# outlived it: end them by pid.
	for pid in $(pgrep -f -- "-address ${V_STATE}/containerd.sock" || true); do
		log "WARNING: shim pid $pid outlived containerd ${ver}: killing it"
		kill -KILL "$pid" 2>/dev/null || true
	done
	# Unmount everything left under our directories, deepest first.
	for d in "$V_STATE" "$V_ROOT"; do
		[[ -n "$d" && -d "$d" ]] || continue
		while read -r m; do
			umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || log "WARNING: cannot unmount $m"
		done < <(awk -v p="$d/" 'index($5, p) == 1 {print $5}' /proc/self/mountinfo | sort -r)
		rm -rf "$d" || log "WARNING: cannot remove $d"
		rmdir "$(dirname "$d")" 2>/dev/null || true
	done
	V_ROOT="" V_STATE="" V_PIDS=""
}

CURRENT_VERSION=""
# shellcheck disable=SC2317 # called by the EXIT trap
on_exit() { if [[ -n "$CURRENT_VERSION" ]]; then teardown "$CURRENT_VERSION"; fi; }

# run_e2e VER OUT: go test ./test/e2e/... with the environment contract
# (hack/test.sh) pointing at the private containerd and daemon;
# TestContainerdRestart runs its own containerd of the same version
# (E2E_CONTAINERD_BIN).
run_e2e() {
	local ver="$1" out="$2" rc=0
	log "containerd ${ver}: running the e2e tests (log ${out}/e2e.log)"
	(
		CRI_SOCKET="${V_STATE}/cri.sock"
		CRI_ENDPOINT="unix://${CRI_SOCKET}"
		CONTAINERD_ADDRESS="${V_STATE}/containerd.sock"
		CONTAINERD_CONFIG="${V_STATE}/containerd.toml"
		CRI_CONTAINERD_CONFIG="${V_STATE}/cri-containerd.toml"
		# The old versions are tested with Debian's runc 1.1.5, as their daemon.
		RUNC_BINARY=/usr/sbin/runc
		export E2E_CONTAINERD_BIN="${COMPAT_CACHE}/${ver}/bin/containerd"
		set -a
		# shellcheck disable=SC1090
		source <(stack_env)
		set +a
		cd "$REPO_ROOT"
		go test -v -count=1 -timeout 30m -skip "$COMPAT_E2E_SKIP" ./test/e2e/...
	) >"${out}/e2e.log" 2>&1 || rc=$?
	grep -E '^(--- FAIL|FAIL|ok) ' "${out}/e2e.log" | sed 's/^/  e2e: /' >&2 || true
	return "$rc"
}

# check_shim VER: run one pod and check that its shim is the version's own
# containerd-shim-runc-v2, not the one first on the host's PATH.
check_shim() {
	local ver="$1" pod pid exe
	cat >"${V_STATE}/pod.json" <<EOF
{"metadata": {"name": "compat-shim-check", "namespace": "default", "uid": "compat-shim-check"}, "linux": {}}
EOF
	pod="$(v_crictl --timeout 60s runp "${V_STATE}/pod.json")" || die "containerd ${ver}: cannot run a pod"
	pid="$(pgrep -f -- "-address ${V_STATE}/containerd.sock" | head -1 || true)"
	exe="$(readlink "/proc/${pid:-0}/exe" 2>/dev/null || true)"
	v_crictl --timeout 60s rmp -f "$pod" >/dev/null || die "containerd ${ver}: cannot remove pod $pod"
	[[ "$exe" == "${COMPAT_CACHE}/${ver}/bin/containerd-shim-runc-v2" ]] ||
		die "containerd ${ver}: the pod's shim is '${exe:-none}', not ${COMPAT_CACHE}/${ver}/bin/containerd-shim-runc-v2"
	log "containerd ${ver}: pod ran with shim $exe"
}

# critest uses host ports 12000-12003 (host-network listeners, CNI portmap
# DNAT rules); wait (up to 10 min) while another run holds them.
critest_ports_busy() {
	ss -Hltn '( sport >= :12000 and sport <= :12003 )' | grep -q . ||
		iptables -w -t nat -S 2>/dev/null | grep -qE -- '--dport 1200[0-3]( |$)'
}
wait_critest_ports() {
	local i
	for ((i = 0; i < 120; i++)); do
		critest_ports_busy || return 0
		((i == 0)) && log "host ports 12000-12003 are in use (another critest?): waiting"
		sleep 5
	done
	log "WARNING: host ports 12000-12003 still in use; running anyway"
}

# run_version VER: 0 if critest passed.
run_version() {
	local ver="$1" bin out cfg vout rc=0
	bin="${COMPAT_CACHE}/${ver}/bin"
	out="${COMPAT_OUT}/${ver}"
	rm -rf "$out"
	mkdir -p "$out" /var/lib/cri-containerd-compat /run/cri-containerd-compat
	CURRENT_VERSION="$ver"
	V_ROOT="$(mktemp -d "/var/lib/cri-containerd-compat/${ver}.XXXXXX")"
	V_STATE="$(mktemp -d "/run/cri-containerd-compat/${ver}.XXXXXX")"
	V_PIDS="${V_STATE}/pids"
	mkdir -p "$V_PIDS"

	cfg="${V_STATE}/containerd.toml"
	write_containerd_config "$ver" "$cfg"
	PATH="${bin}:${PATH}" PID_DIR="$V_PIDS" \
		start_bg containerd "${out}/containerd.log" "${bin}/containerd" --config "$cfg"
	PID_DIR="$V_PIDS" wait_for "containerd ${ver} at ${V_STATE}/containerd.sock" 60 containerd v_ctr "$ver" version
	vout="$(v_ctr "$ver" version | sed -n '/^Server:/,$ s/^[[:space:]]*Version:[[:space:]]*//p')"
	log "containerd ${ver}: server version ${vout}"
	[[ "$vout" == "${ver}."* ]] || die "expected containerd ${ver}.x, the server reports ${vout}"

	cat >"${V_STATE}/cri-containerd.toml" <<EOF
[runtimes]
  [runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    root = "${V_STATE}/runc"
EOF
	PID_DIR="$V_PIDS" start_bg cri-containerd "${out}/cri-containerd.log" "$CRI_CONTAINERD_BIN" \
		--config "${V_STATE}/cri-containerd.toml" \
		--containerd-endpoint "${V_STATE}/containerd.sock" \
		--containerd-namespace "$CONTAINERD_NAMESPACE" \
		--socket-path "${V_STATE}/cri.sock" \
		--root-dir "${V_ROOT}/cri" \
		--state-dir "${V_STATE}/cri" \
		--registry-config-path "$CERTS_D" \
		--network-conf-dir "$CNI_CONF_DIR" \
		--network-bin-dir "$CNI_BIN_DIR" \
		--sandbox-image "$SANDBOX_IMAGE" \
		--nri-socket "${V_STATE}/nri.sock" \
		--metrics-addr "" \
		--stream-port 0
	PID_DIR="$V_PIDS" wait_for "cri-containerd on containerd ${ver}" 90 cri-containerd v_crictl --timeout 5s info

	check_shim "$ver"
	if [[ "$COMPAT_CRITEST" == 1 ]]; then
		wait_critest_ports
		log "containerd ${ver}: running critest"
		CRI_ENDPOINT="unix://${V_STATE}/cri.sock" CRITEST_NRI_SOCKET="${V_STATE}/nri.sock" OUTPUT_DIR="$out" "${REPO_ROOT}/hack/critest.sh" || rc=$?
	fi
	if [[ "$COMPAT_E2E" == 1 ]]; then
		run_e2e "$ver" "$out" || rc=1
	fi

	teardown "$ver"
	CURRENT_VERSION=""
	return "$rc"
}

# ---------------------------------------------------------------------------

for v in "${versions[@]}"; do
	case "$v" in
	1.6) fetch_16 ;;
	1.7) fetch_17 ;;
	esac
done
build_daemon

declare -A result=()
failed=0
for v in "${versions[@]}"; do
	log "===== containerd ${v}"
	# A subshell per version: `die` ends only that version, and its EXIT
	# trap tears the version down.
	set +e
	(
		set -e
		trap on_exit EXIT
		trap 'exit 130' INT TERM
		run_version "$v"
	)
	rc=$?
	set -e
	((rc == 130)) && exit 130
	if ((rc == 0)); then result[$v]=ok; else
		result[$v]=FAILED
		failed=1
	fi
done

echo
echo "cri-containerd compatibility (critest v1.37.0):"
for v in "${versions[@]}"; do
	log_f="${COMPAT_OUT}/${v}/critest.log"
	summary="$(grep -hE '^(SUCCESS|FAIL)! ' "$log_f" 2>/dev/null | tail -1 || true)"
	printf '  containerd %s: %-6s %s\n' "$v" "${result[$v]}" "${summary:-no critest summary (see ${COMPAT_OUT}/${v}/)}"
done
exit "$failed"
