# shellcheck shell=bash
# deploy/lib.sh: settings and helpers shared by the runtime-stack scripts
# (hack/up.sh, hack/down.sh, hack/test.sh, hack/critest.sh, deploy/*.sh).
# Source it from a `set -euo pipefail` script. Every setting below can be
# overridden from the environment.
#
# The stack: containerd (deploy/containerd-config.toml), a local registry
# (`crane registry serve`) holding the test images (test/e2e/images), a
# hosts.toml tree mapping every public registry to it, a CNI config, and the
# cri-containerd daemon. All paths are project-owned so a system containerd
# can run beside it. Processes are tracked by PID files in $PID_DIR (line 1:
# pid, line 2: executable), never by name.

REPO_ROOT="${REPO_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
export PATH="/usr/local/go/bin:/usr/local/bin:/usr/sbin:/sbin:${PATH}"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

STACK_ROOT="${STACK_ROOT:-/var/lib/cri-containerd-stack}"     # persistent state
STACK_STATE="${STACK_STATE:-/run/cri-containerd-stack}"       # volatile state, sockets
STACK_LOG_DIR="${STACK_LOG_DIR:-/var/log/cri-containerd-stack}"
PID_DIR="${PID_DIR:-${STACK_STATE}/pids}"

# containerd. The paths in the config file are fixed; keep them in sync.
CONTAINERD_CONFIG="${CONTAINERD_CONFIG:-${REPO_ROOT}/deploy/containerd-config.toml}"
CONTAINERD_ADDRESS="${CONTAINERD_ADDRESS:-${STACK_STATE}/containerd.sock}"
CONTAINERD_NAMESPACE="${CONTAINERD_NAMESPACE:-k8s.io}"

# Local registry and the hosts.toml tree that points every registry at it.
REGISTRY_PORT="${REGISTRY_PORT:-5000}"
REGISTRY="${REGISTRY:-127.0.0.1:${REGISTRY_PORT}}"
CERTS_D="${CERTS_D:-/etc/cri-containerd/certs.d}"
IMAGE_CACHE_DIR="${IMAGE_CACHE_DIR:-/var/cache/cri-containerd-images}"
IMAGES_MANIFEST="${IMAGES_MANIFEST:-${REPO_ROOT}/_output/e2e-images.json}"

# CNI.
CNI_CONF_DIR="${CNI_CONF_DIR:-/etc/cri-containerd/net.d}"
CNI_BIN_DIR="${CNI_BIN_DIR:-/opt/cni/bin}"
CNI_NETWORK_NAME="${CNI_NETWORK_NAME:-cri-containerd}"
CNI_BRIDGE="${CNI_BRIDGE:-cricbr0}"
CNI_SUBNET="${CNI_SUBNET:-10.231.0.0/16}"
CNI_IPAM_DIR="${CNI_IPAM_DIR:-${STACK_ROOT}/cni-ipam}"

# cri-containerd.
CRI_SOCKET="${CRI_SOCKET:-/run/cri-containerd/cri-containerd.sock}"
CRI_ENDPOINT="${CRI_ENDPOINT:-unix://${CRI_SOCKET}}"
CRI_CONTAINERD_BIN="${CRI_CONTAINERD_BIN:-${REPO_ROOT}/_output/cri-containerd}"
# Daemon config file for what the flags do not carry (runc root). Set it to
# the empty string to start the daemon without --config.
CRI_CONTAINERD_CONFIG="${CRI_CONTAINERD_CONFIG-${REPO_ROOT}/deploy/cri-containerd.toml}"
CRI_CONTAINERD_EXTRA_ARGS="${CRI_CONTAINERD_EXTRA_ARGS:-}"
# The stack's NRI socket: its own, so that it never fights another runtime on
# the machine (a containerd with its built-in CRI) over /var/run/nri/nri.sock.
NRI_SOCKET="${NRI_SOCKET:-${STACK_STATE}/nri.sock}"
# The OCI runtime binary of the daemon's runc handler (binary_name of
# [runtimes.runc]): the runc v1.5.3 deploy/install.sh builds into
# /opt/cri-containerd/bin/runc (idmapped mounts: user namespaces; the whole
# critest suite passes on it), or Debian's runc 1.1.5 as the fallback with
# RUNC_BINARY=/usr/sbin/runc (no user namespaces). Empty keeps what
# $CRI_CONTAINERD_CONFIG says. The e2e tests' private daemons use it too.
RUNC_BINARY="${RUNC_BINARY-/opt/cri-containerd/bin/runc}"
SANDBOX_IMAGE="${SANDBOX_IMAGE:-registry.k8s.io/pause:3.10.2}"
CRICTL_CONFIG="${CRICTL_CONFIG:-/etc/crictl.yaml}"

OUTPUT_DIR="${OUTPUT_DIR:-${REPO_ROOT}/_output}"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# ---------------------------------------------------------------------------
# Process tracking by PID file: $PID_DIR/<name>.pid = "<pid>\n<exe>\n".

pid_file() { echo "${PID_DIR}/$1.pid"; }

# pid_of NAME: print the pid if the recorded process is still the one we
# started (same pid, same executable), else nothing.
pid_of() {
	local f pid exe cur
	f="$(pid_file "$1")"
	[[ -s "$f" ]] || return 0
	pid="$(sed -n 1p "$f")"
	exe="$(sed -n 2p "$f")"
	[[ "$pid" =~ ^[0-9]+$ ]] || return 0
	kill -0 "$pid" 2>/dev/null || return 0
	cur="$(readlink "/proc/${pid}/exe" 2>/dev/null || true)"
	# A rebuilt binary shows as "<path> (deleted)": still our process.
	[[ -z "$exe" || "${cur% (deleted)}" == "$exe" ]] || return 0
	echo "$pid"
}

is_running() { [[ -n "$(pid_of "$1")" ]]; }

# start_bg NAME LOGFILE CMD...: start CMD detached (own session, stdin from
# /dev/null, output appended to LOGFILE) unless NAME is already running.
start_bg() {
	local name="$1" logfile="$2" pid exe
	shift 2
	if is_running "$name"; then
		log "$name already running (pid $(pid_of "$name"))"
		return 0
	fi
	mkdir -p "$PID_DIR" "$(dirname "$logfile")"
	exe="$(command -v "$1")" || die "$1: not found"
	exe="$(readlink -f "$exe")"
	printf '\n==== %s starting: %s\n' "$(date -Is)" "$*" >>"$logfile"
	# Without job control the background child is no process-group leader,
	# so setsid(1) calls setsid(2) and execs in place: $! stays the pid.
	# fd 9 is the scripts' flock (node-e2e, benchmark, compat): a daemon that
	# inherited it would hold the lock after the script ends (the node-e2e
	# registry did, and every later node-e2e run refused to start).
	setsid "$@" </dev/null >>"$logfile" 2>&1 9>&- &
	pid=$!
	printf '%s\n%s\n' "$pid" "$exe" >"$(pid_file "$name")"
	sleep 0.2
	kill -0 "$pid" 2>/dev/null || { tail -n 30 "$logfile" >&2; die "$name exited at once (log: $logfile)"; }
	log "$name started (pid $pid, log $logfile)"
}

# stop_bg NAME [TIMEOUT_SECONDS]: SIGTERM the recorded process, SIGKILL after
# the timeout, remove the PID file.
stop_bg() {
	local name="$1" timeout="${2:-20}" pid i
	pid="$(pid_of "$name")"
	if [[ -z "$pid" ]]; then
		rm -f "$(pid_file "$name")"
		log "$name not running"
		return 0
	fi
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < timeout * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "$name (pid $pid) did not stop in ${timeout}s, sending SIGKILL"
		kill -KILL "$pid" 2>/dev/null || true
		sleep 0.2
	fi
	rm -f "$(pid_file "$name")"
	log "$name stopped (pid $pid)"
}

# wait_for DESCRIPTION TIMEOUT_SECONDS PROCESS_NAME CMD...: retry CMD until it
# succeeds; give up after the timeout or when PROCESS_NAME died.
wait_for() {
	local what="$1" timeout="$2" proc="$3" i
	shift 3
	for ((i = 0; i < timeout * 5; i++)); do
		if "$@" >/dev/null 2>&1; then
			return 0
		fi
		if [[ -n "$proc" ]] && ! is_running "$proc"; then
			die "$proc died while waiting for $what"
		fi
		sleep 0.2
	done
	die "timed out after ${timeout}s waiting for $what"
}

# ---------------------------------------------------------------------------
# containerd

ctr_() { ctr --address "$CONTAINERD_ADDRESS" "$@"; }

start_containerd() {
	mkdir -p "$STACK_ROOT" "$STACK_STATE" "$STACK_LOG_DIR"
	command -v containerd >/dev/null || die "containerd not installed (run deploy/install.sh)"
	start_bg containerd "${STACK_LOG_DIR}/containerd.log" containerd --config "$CONTAINERD_CONFIG"
	wait_for "containerd at $CONTAINERD_ADDRESS" 60 containerd ctr_ version
	log "containerd ready at $CONTAINERD_ADDRESS"
}

# ---------------------------------------------------------------------------
# registry + images

registry_up() { curl -fsS -o /dev/null "http://${REGISTRY}/v2/" 2>/dev/null; }

start_registry() {
	command -v crane >/dev/null || die "crane not installed (run deploy/install.sh)"
	if ! is_running registry && registry_up; then
		die "something else already serves ${REGISTRY}; set REGISTRY_PORT"
	fi
	start_bg registry "${STACK_LOG_DIR}/registry.log" crane registry serve --address "$REGISTRY"
	wait_for "registry at $REGISTRY" 30 registry registry_up
	log "registry ready at http://${REGISTRY}"
}

# push_images: build and push every test image (fast when nothing changed),
# then drop from containerd every image whose name is a test image but whose
# digest is not the one just pushed: critest reuses a present image instead of
# pulling it again. Sets CHANGED_IMAGES to the names removed.
push_images() {
	local images_log="${STACK_LOG_DIR}/images.log" up dig ref
	log "building and pushing test images to $REGISTRY"
	# stdout: one "upstream-ref local-ref digest" line per tag.
	(cd "$REPO_ROOT" && go run ./test/e2e/images --registry "$REGISTRY" \
		--cache-dir "$IMAGE_CACHE_DIR" --manifest "$IMAGES_MANIFEST") \
		>"$images_log" || { cat "$images_log" >&2; die "image build/push failed"; }
	CHANGED_IMAGES=()
	if is_running containerd; then
		declare -A want=()
		while read -r up _ dig; do
			[[ -n "$dig" ]] && want["$up"]="$dig"
		done <"$images_log"
		while read -r ref _ dig _; do
			if [[ -n "${want[$ref]:-}" && "${want[$ref]}" != "$dig" ]]; then
				CHANGED_IMAGES+=("$ref")
			fi
		done < <(ctr_ -n "$CONTAINERD_NAMESPACE" images ls 2>/dev/null | tail -n +2)
	fi
	if ((${#CHANGED_IMAGES[@]})); then
		log "removing ${#CHANGED_IMAGES[@]} outdated test image(s) from containerd namespace $CONTAINERD_NAMESPACE: ${CHANGED_IMAGES[*]}"
		ctr_ -n "$CONTAINERD_NAMESPACE" images rm "${CHANGED_IMAGES[@]}" >/dev/null 2>&1 || true
	fi
	log "images pushed; manifest $IMAGES_MANIFEST"
}

# ---------------------------------------------------------------------------
# hosts.toml tree: every upstream registry -> the local registry over http.

MIRRORED_HOSTS=(registry.k8s.io k8s.gcr.io gcr.io public.ecr.aws docker.io registry-1.docker.io index.docker.io quay.io _default)

# containerd's host directory name for host[:port]: ":port" becomes "_port_"
# (core/remotes/docker/config/hosts.go hostDirectory).
host_dir_name() {
	local h="$1"
	if [[ "$h" == *:* ]]; then echo "${h%:*}_${h##*:}_"; else echo "$h"; fi
}

write_certs_d() {
	local dir="${1:-$CERTS_D}" tmp h caps
	tmp="${dir}.new.$$"
	rm -rf "$tmp"
	mkdir -p "$tmp"
	for h in "${MIRRORED_HOSTS[@]}" "$REGISTRY"; do
		caps='"pull", "resolve"'
		[[ "$h" == "$REGISTRY" ]] && caps='"pull", "resolve", "push"'
		mkdir -p "${tmp}/$(host_dir_name "$h")"
		cat >"${tmp}/$(host_dir_name "$h")/hosts.toml" <<EOF
# Generated by cri-containerd deploy/lib.sh: ${h} is served by the local
# test registry. \`server\` is the only fallback, so the real host is never tried.
server = "http://${REGISTRY}"

[host."http://${REGISTRY}"]
  capabilities = [${caps}]
EOF
	done
	echo "generated by cri-containerd deploy/lib.sh for ${REGISTRY}" >"${tmp}/.cri-containerd-stack"
	mkdir -p "$(dirname "$dir")"
	rm -rf "${dir}.old"
	[[ -e "$dir" ]] && mv "$dir" "${dir}.old"
	mv "$tmp" "$dir"
	rm -rf "${dir}.old"
	log "registry hosts: $dir -> http://${REGISTRY} (${MIRRORED_HOSTS[*]} $(host_dir_name "$REGISTRY"))"
}

# ---------------------------------------------------------------------------
# CNI

ip2int() {
	local a b c d
	IFS=. read -r a b c d <<<"$1"
	echo $(((a << 24) + (b << 16) + (c << 8) + d))
}

# cidr_overlap A/n B/m: true if the two IPv4 networks overlap.
cidr_overlap() {
	local a="${1%/*}" an="${1#*/}" b="${2%/*}" bn="${2#*/}" n mask
	[[ "$1" == */* ]] || an=32
	[[ "$2" == */* ]] || bn=32
	n=$((an < bn ? an : bn))
	mask=$(((0xffffffff << (32 - n)) & 0xffffffff))
	(($(($(ip2int "$a") & mask)) == $(($(ip2int "$b") & mask))))
}

write_cni_conf() {
	local net="${CNI_SUBNET%/*}" plen="${CNI_SUBNET#*/}" gw base dst dev addrs a
	base=$(ip2int "$net")
	gw="$(((base + 1) >> 24 & 255)).$(((base + 1) >> 16 & 255)).$(((base + 1) >> 8 & 255)).$(((base + 1) & 255))"

	# The subnet must not collide with a route of another interface.
	while read -r dst _ dev _; do
		[[ "$dst" =~ ^[0-9.]+(/[0-9]+)?$ ]] || continue
		[[ "$dev" == "$CNI_BRIDGE" ]] && continue
		if cidr_overlap "$dst" "$CNI_SUBNET"; then
			die "CNI subnet $CNI_SUBNET overlaps route $dst on $dev; set CNI_SUBNET"
		fi
	done < <(ip -4 route show | awk '{d=""; for (i=1;i<=NF;i++) if ($i=="dev") d=$(i+1); print $1, "dev", d, "x"}')

	# A bridge left with another address breaks every sandbox: delete it,
	# and the IP allocations that belonged to it.
	if ip link show "$CNI_BRIDGE" >/dev/null 2>&1; then
		addrs="$(ip -4 -o addr show dev "$CNI_BRIDGE" | awk '{print $4}')"
		for a in $addrs; do
			if [[ "$a" != "${gw}/${plen}" ]]; then
				log "bridge $CNI_BRIDGE has $a, expected ${gw}/${plen}: deleting it"
				ip link del "$CNI_BRIDGE"
				rm -rf "${CNI_IPAM_DIR:?}/${CNI_NETWORK_NAME}"
				break
			fi
		done
	fi

	mkdir -p "$CNI_CONF_DIR" "$CNI_IPAM_DIR"
	for a in "$CNI_CONF_DIR"/*; do
		[[ -e "$a" && "$(basename "$a")" != 10-cri-containerd.conflist ]] && log "WARNING: other CNI config in $CNI_CONF_DIR: $a"
	done
	cat >"${CNI_CONF_DIR}/.10-cri-containerd.conflist.tmp" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "${CNI_NETWORK_NAME}",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "${CNI_BRIDGE}",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "${CNI_SUBNET}", "gateway": "${gw}" }]],
        "routes": [{ "dst": "0.0.0.0/0" }],
        "dataDir": "${CNI_IPAM_DIR}"
      }
    },
    {
      "type": "portmap",
      "capabilities": { "portMappings": true },
      "snat": true
    },
    {
      "type": "bandwidth",
      "capabilities": { "bandwidth": true }
    }
  ]
}
EOF
	mv "${CNI_CONF_DIR}/.10-cri-containerd.conflist.tmp" "${CNI_CONF_DIR}/10-cri-containerd.conflist"
	for a in bridge host-local portmap bandwidth loopback; do
		[[ -x "${CNI_BIN_DIR}/$a" ]] || die "CNI plugin ${CNI_BIN_DIR}/$a missing (run deploy/install.sh)"
	done
	log "CNI: ${CNI_CONF_DIR}/10-cri-containerd.conflist (bridge $CNI_BRIDGE, $CNI_SUBNET, IPAM in $CNI_IPAM_DIR)"
}

# ---------------------------------------------------------------------------
# crictl

crictl_() { crictl --runtime-endpoint "$CRI_ENDPOINT" --image-endpoint "$CRI_ENDPOINT" "$@"; }

write_crictl_yaml() {
	local want
	want="# Generated by cri-containerd deploy/lib.sh
runtime-endpoint: ${CRI_ENDPOINT}
image-endpoint: ${CRI_ENDPOINT}
timeout: 30
debug: false
pull-image-on-create: false
"
	if [[ -f "$CRICTL_CONFIG" ]] && ! grep -q "cri-containerd deploy/lib.sh" "$CRICTL_CONFIG" && [[ ! -e "${CRICTL_CONFIG}.orig" ]]; then
		cp "$CRICTL_CONFIG" "${CRICTL_CONFIG}.orig"
		log "saved the previous $CRICTL_CONFIG as ${CRICTL_CONFIG}.orig"
	fi
	printf '%s' "$want" >"$CRICTL_CONFIG"
	log "crictl: $CRICTL_CONFIG -> $CRI_ENDPOINT"
}

# ---------------------------------------------------------------------------
# cri-containerd

# build_daemon: go build the daemon; CRI_CONTAINERD_RACE=1 builds it with the
# race detector (hack/test.sh does, so e2e and critest run a -race daemon).
# The shim log writer is always built without it: a race-enabled binary
# sleeps 1 s at exit (GORACE atexit_sleep_ms), and the shim waits for the
# writer's exit at every task delete, so every container stop would take 1 s
# more (its code runs under -race in the unit tests).
build_daemon() {
	local rev race=()
	[[ "${CRI_CONTAINERD_RACE:-0}" == 1 ]] && race=(-race)
	log "building cri-containerd ${race[*]} -> $CRI_CONTAINERD_BIN"
	mkdir -p "$(dirname "$CRI_CONTAINERD_BIN")"
	rev="$(git -C "$REPO_ROOT" rev-parse --short=12 HEAD 2>/dev/null || true)"
	(cd "$REPO_ROOT" && go build "${race[@]}" -ldflags "-X github.com/cri-containerd/cri-containerd/version.Revision=${rev}" \
		-o "$CRI_CONTAINERD_BIN" ./cmd/cri-containerd &&
		CGO_ENABLED=0 go build -o "$(dirname "$CRI_CONTAINERD_BIN")/cri-containerd-log-writer" ./cmd/cri-containerd-log-writer) ||
		die "building cri-containerd failed (hack/up.sh --no-daemon brings up the rest)"
}

# render_daemon_config SRC DST: copy the daemon config SRC to DST with
# binary_name = $RUNC_BINARY in its [runtimes.runc] table (added when SRC has
# no such table). Nothing else of SRC changes.
render_daemon_config() {
	local src="$1" dst="$2"
	awk -v bin="$RUNC_BINARY" '
		function header(l) { return l ~ /^[ \t]*\[/ }
		/^[ \t]*\[runtimes\.runc\][ \t]*(#.*)?$/ { print; print "    binary_name = \"" bin "\""; inrunc = 1; seen = 1; next }
		header($0) { inrunc = 0 }
		inrunc && /^[ \t]*binary_name[ \t]*=/ { next }
		{ print }
		END { if (!seen) { print ""; print "[runtimes.runc]"; print "    runtime_type = \"io.containerd.runc.v2\""; print "    binary_name = \"" bin "\"" } }
	' "$src" >"${dst}.tmp" && mv "${dst}.tmp" "$dst"
}

daemon_args() {
	local cfg="$CRI_CONTAINERD_CONFIG"
	DAEMON_ARGS=()
	if [[ -n "$cfg" && -n "$RUNC_BINARY" ]]; then
		[[ -x "$RUNC_BINARY" ]] || die "RUNC_BINARY $RUNC_BINARY missing (run deploy/install.sh, or RUNC_BINARY=/usr/sbin/runc for Debian's)"
		mkdir -p "$STACK_STATE"
		render_daemon_config "$cfg" "${STACK_STATE}/cri-containerd.toml"
		cfg="${STACK_STATE}/cri-containerd.toml"
	fi
	[[ -n "$cfg" ]] && DAEMON_ARGS+=(--config "$cfg")
	DAEMON_ARGS+=(
		--containerd-endpoint "$CONTAINERD_ADDRESS"
		--registry-config-path "$CERTS_D"
		--network-conf-dir "$CNI_CONF_DIR"
		--network-bin-dir "$CNI_BIN_DIR"
		--socket-path "$CRI_SOCKET"
		--sandbox-image "$SANDBOX_IMAGE"
		--nri-socket "$NRI_SOCKET"
	)
	if [[ -n "$CRI_CONTAINERD_EXTRA_ARGS" ]]; then
		# shellcheck disable=SC2206 # word splitting intended
		DAEMON_ARGS+=($CRI_CONTAINERD_EXTRA_ARGS)
	fi
}

# start_daemon: start cri-containerd, or restart it when its binary was
# rebuilt since it started, then wait until it answers.
start_daemon() {
	local pid cur
	[[ -x "$CRI_CONTAINERD_BIN" ]] || die "$CRI_CONTAINERD_BIN missing (make build)"
	local before=""
	[[ -f "${STACK_STATE}/cri-containerd.toml" ]] && before="$(cat "${STACK_STATE}/cri-containerd.toml")"
	daemon_args
	pid="$(pid_of cri-containerd)"
	if [[ -n "$pid" ]]; then
		cur="$(readlink "/proc/${pid}/exe" 2>/dev/null || true)"
		if [[ "$cur" == *"(deleted)" ]] || [[ "${RESTART_DAEMON:-0}" == 1 ]]; then
			log "cri-containerd binary changed: restarting it"
			stop_bg cri-containerd 30
		elif [[ -n "$before" && -f "${STACK_STATE}/cri-containerd.toml" && "$(cat "${STACK_STATE}/cri-containerd.toml")" != "$before" ]]; then
			log "cri-containerd config changed (RUNC_BINARY=${RUNC_BINARY}): restarting it"
			stop_bg cri-containerd 30
		fi
	fi
	start_bg cri-containerd "${STACK_LOG_DIR}/cri-containerd.log" "$CRI_CONTAINERD_BIN" "${DAEMON_ARGS[@]}"
	wait_for "cri-containerd at $CRI_ENDPOINT" 90 cri-containerd crictl_ --timeout 5s info
	log "cri-containerd ready at $CRI_ENDPOINT"
}

# ---------------------------------------------------------------------------
# private daemons of the comparison scripts (hack/benchmark.sh, hack/node-e2e.sh)

# subst_config SRC DST FROM TO...: DST is SRC with every FROM replaced by its
# TO (each FROM must occur: a changed SRC fails loudly instead of sharing paths).
subst_config() {
	local src="$1" dst="$2" text from to
	shift 2
	text="$(cat "$src")"
	while (($# >= 2)); do
		from="$1" to="$2"
		shift 2
		[[ "$text" == *"$from"* ]] || die "$src changed: no \"$from\" in it (update ${BASH_SOURCE[-1]##*/})"
		text="${text//"$from"/"$to"}"
	done
	printf '# Generated by %s from %s\n%s\n' "${BASH_SOURCE[-1]##*/}" "$src" "$text" >"$dst"
}

# write_reference_config DST ROOT STATE SHIM_DIR STREAM_PORT DEBUG_SOCKET [FROM TO]...:
# a private containerd with its built-in CRI: deploy/containerd-reference-config.toml
# (REF_CONFIG) with its own paths (ROOT, STATE; the shim socket dir must stay
# short), stream port, debug socket (pprof; "" = none), then the extra
# substitutions.
write_reference_config() {
	local dst="$1" root="$2" state="$3" shim="$4" port="$5" debug="$6"
	shift 6
	subst_config "${REF_CONFIG:-${REPO_ROOT}/deploy/containerd-reference-config.toml}" "$dst" \
		"/var/lib/cri-containerd-stack/reference" "$root" \
		"/run/cri-containerd-stack/reference" "$state" \
		'socket_dir = "/run/cri-containerd-stack/rs"' "socket_dir = \"$shim\"" \
		'stream_server_port = "10110"' "stream_server_port = \"$port\"" \
		"$(printf '[plugins."io.containerd.server.v1.debug"]\n    address = ""')" \
		"$(printf '[plugins."io.containerd.server.v1.debug"]\n    address = "%s"' "$debug")" \
		"$@"
}

# cleanup_containerd_ns ADDRESS NAMESPACE: kill and remove every task,
# container, image and lease of a private daemon's containerd namespace, then
# the namespace.
cleanup_containerd_ns() {
	local c=(ctr --address "$1" -n "$2") ns="$2" t imgs leases i
	"${c[@]}" namespaces ls -q 2>/dev/null | grep -qxF "$ns" || return 0
	for t in $("${c[@]}" tasks ls -q 2>/dev/null); do
		"${c[@]}" tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true
		"${c[@]}" tasks delete -f "$t" >/dev/null 2>&1 || true
	done
	for t in $("${c[@]}" containers ls -q 2>/dev/null); do
		"${c[@]}" containers rm "$t" >/dev/null 2>&1 || true
	done
	mapfile -t imgs < <("${c[@]}" images ls -q 2>/dev/null)
	((${#imgs[@]} == 0)) || "${c[@]}" images rm --sync "${imgs[@]}" >/dev/null 2>&1 || true
	mapfile -t leases < <("${c[@]}" leases ls -q 2>/dev/null)
	((${#leases[@]} == 0)) || "${c[@]}" leases rm --sync "${leases[@]}" >/dev/null 2>&1 || true
	for ((i = 0; i < 20; i++)); do
		"${c[@]}" namespaces rm "$ns" >/dev/null 2>&1 && return 0
		sleep 0.5 # garbage collection is asynchronous
	done
	log "WARNING: containerd namespace $ns not removed: $("${c[@]}" namespaces rm "$ns" 2>&1 | tail -1)"
}

# stack_up [--no-daemon]: install, configure and start everything (idempotent).
stack_up() {
	local daemon=1
	[[ "${1:-}" == --no-daemon ]] && daemon=0 # or --with-daemon (default)
	[[ "$(id -u)" == 0 ]] || die "the runtime stack needs root"
	mkdir -p "$STACK_ROOT" "$STACK_STATE" "$STACK_LOG_DIR" "$OUTPUT_DIR"
	# Serialize installs between concurrent runs of these scripts.
	flock "${STACK_STATE}/install.lock" "${REPO_ROOT}/deploy/install.sh"
	write_certs_d "$CERTS_D"
	write_cni_conf
	write_crictl_yaml
	start_containerd
	start_registry
	push_images
	if ((${#CHANGED_IMAGES[@]})) && is_running cri-containerd; then
		log "test images changed: restarting cri-containerd so it forgets them"
		stop_bg cri-containerd 30
	fi
	((daemon)) || return 0
	build_daemon
	start_daemon
}

# stack_env: print the environment contract for e2e tests (see hack/test.sh).
stack_env() {
	cat <<EOF
CRI_ENDPOINT=${CRI_ENDPOINT}
CRI_SOCKET=${CRI_SOCKET}
CONTAINERD_ADDRESS=${CONTAINERD_ADDRESS}
CONTAINERD_NAMESPACE=${CONTAINERD_NAMESPACE}
CONTAINERD_CONFIG=${CONTAINERD_CONFIG}
REGISTRY=${REGISTRY}
CERTS_D=${CERTS_D}
CNI_CONF_DIR=${CNI_CONF_DIR}
CNI_BIN_DIR=${CNI_BIN_DIR}
CNI_SUBNET=${CNI_SUBNET}
CNI_BRIDGE=${CNI_BRIDGE}
CNI_IPAM_DIR=${CNI_IPAM_DIR}
CRI_CONTAINERD_BIN=${CRI_CONTAINERD_BIN}
CRI_CONTAINERD_CONFIG=${CRI_CONTAINERD_CONFIG}
RUNC_BINARY=${RUNC_BINARY}
SANDBOX_IMAGE=${SANDBOX_IMAGE}
IMAGES_MANIFEST=${IMAGES_MANIFEST}
STACK_ROOT=${STACK_ROOT}
STACK_STATE=${STACK_STATE}
STACK_LOG_DIR=${STACK_LOG_DIR}
PID_DIR=${PID_DIR}
EOF
}
