#!/usr/bin/env bash
# `make node-e2e`: the Kubernetes node e2e suite's [NodeConformance] specs
# (k8s v1.37.2 e2e_node.test: a real kubelet, API server and etcd in the test
# process) against
#   cri-containerd  a PRIVATE cri-containerd built from this tree, on the
#                   stack's containerd, own socket, root/state dirs and
#                   containerd namespace (node-e2e);
#   reference       a PRIVATE containerd 2.4 with its built-in CRI
#                   (deploy/lib.sh write_reference_config, as hack/benchmark.sh);
# one after the other (kubelet's ports), with the same images, CNI config
# (bridge ne2ebr0 on the kubelet's pod CIDR 10.100.0.0/24), `test-handler`
# runtime handler, cgroupfs driver and sandbox image. Then test/nodee2e prints
# passed/failed/skipped per runtime and every spec that fails on ours but
# passes on the reference (_output/node-e2e/table.txt).
#
# The shared stack's containerd is used, never started or changed; its
# cri-containerd is not used at all. hack/node-e2e-install.sh runs first
# (binaries, images, registry on 127.0.0.1:5055: idempotent).
#
#   NODE_E2E_TARGETS  "cri-containerd reference" (run order; either alone works)
#   NODE_E2E_QUICK=1  the quick subset (pods, probes, container runtime,
#                     lifecycle hooks, security context, logs; hack/test.sh)
#   NODE_E2E_FOCUS    ginkgo -focus (default: [NodeConformance] or the quick subset)
#   NODE_E2E_SKIP     ginkgo -skip (default: the standard skips)
#   NODE_E2E_NODES    ginkgo -nodes (default 2)
#   NODE_E2E_OUT      results (default _output/node-e2e[-quick]): <target>/build-log.txt,
#                     junit, kubelet and services logs; table.txt
#   NODE_E2E_KEEP=1   keep the private daemons' state dirs
#   NODE_E2E_INSTALL=0  skip hack/node-e2e-install.sh (its images must be in the registry)
set -euo pipefail
# shellcheck source=hack/node-e2e-lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/node-e2e-lib.sh"

NODE_E2E_TARGETS="${NODE_E2E_TARGETS:-cri-containerd reference}"
NODE_E2E_QUICK="${NODE_E2E_QUICK:-0}"
QUICK_FOCUS='\[sig-node\] (Pods|Probing container|Container Runtime|Container Lifecycle Hook|Security Context|ContainerLogPath|Kubelet when scheduling a busybox command) .*\[NodeConformance\]'
if [[ "$NODE_E2E_QUICK" == 1 ]]; then
	NODE_E2E_FOCUS="${NODE_E2E_FOCUS:-$QUICK_FOCUS}"
	NODE_E2E_OUT="${NODE_E2E_OUT:-${OUTPUT_DIR}/node-e2e-quick}"
	# the long or timing-sensitive ones of that subset (restart back-off, failure
	# thresholds, probe timing on a loaded machine)
	NODE_E2E_SKIP_EXTRA='should \*not\* be restarted|should be restarted|should have monotonically increasing restart count|should override timeoutGracePeriodSeconds|with readiness probe that fails should never be ready|not be ready before initial delay|ready immediately after startupProbe'
fi
NODE_E2E_FOCUS="${NODE_E2E_FOCUS:-\[NodeConformance\]}"
NODE_E2E_SKIP="${NODE_E2E_SKIP:-\[Flaky\]|\[Slow\]|\[Serial\]|\[Feature:.+\]|\[NodeFeature:.+\]|\[Alpha\]${NODE_E2E_SKIP_EXTRA:+|${NODE_E2E_SKIP_EXTRA}}}"
NODE_E2E_NODES="${NODE_E2E_NODES:-2}"
NODE_E2E_OUT="${NODE_E2E_OUT:-${OUTPUT_DIR}/node-e2e}"
NODE_E2E_KEEP="${NODE_E2E_KEEP:-0}"
NODE_E2E_TIMEOUT="${NODE_E2E_TIMEOUT:-3h}"

NE_STATE="${STACK_STATE}/ne" # sockets: keep it short
NE_ROOT="${STACK_ROOT}/node-e2e"
NE_CERTS_D="${NE_STATE}/certs.d"
NE_CNI_DIR="${NE_STATE}/net.d"
NE_POD_CIDR=10.100.0.0/24
# (a) private cri-containerd
A_NAMESPACE=node-e2e
A_SOCKET="${NE_STATE}/cri.sock"
A_ENDPOINT="unix://${A_SOCKET}"
A_DIR="${NE_ROOT}/cri"
A_STATE="${NE_STATE}/cri"
A_CONFIG="${NE_STATE}/cri-containerd.toml"
A_BIN="${NODE_E2E_OUT}/bin/cri-containerd"
# (b) private containerd with its built-in CRI
B_ROOT="${NE_ROOT}/reference"
B_STATE="${NE_STATE}/ref"
B_SOCKET="${B_STATE}/containerd.sock"
B_ENDPOINT="unix://${B_SOCKET}"
B_SHIM_DIR="${STACK_STATE}/ns"
B_CONFIG="${NE_STATE}/reference-containerd.toml"

[[ "$(id -u)" == 0 ]] || die "needs root"
command -v jq >/dev/null || die "jq missing"
command -v containerd >/dev/null || die "containerd not installed (deploy/install.sh)"
ctr_ version >/dev/null 2>&1 || die "containerd at $CONTAINERD_ADDRESS is not up (hack/up.sh)"
for t in $NODE_E2E_TARGETS; do
	[[ "$t" == cri-containerd || "$t" == reference ]] || die "unknown target $t (cri-containerd, reference)"
done

mkdir -p "$STACK_STATE" "$PID_DIR" "$NE_STATE" "$NE_ROOT" "$NODE_E2E_OUT"
exec 9>"${STACK_STATE}/node-e2e.lock"
flock -n 9 || die "another hack/node-e2e.sh is running"

if [[ "${NODE_E2E_INSTALL:-1}" != 0 ]]; then
	"${REPO_ROOT}/hack/node-e2e-install.sh"
fi

# kubelet and the in-process API server need these ports.
ports_free() {
	local p
	for p in 6443 10248 10250 10255 2379; do
		if ss -Hltn "sport = :$p" | grep -q .; then
			log "port $p is busy: $(ss -Hltnp "sport = :$p" | head -1)"
			return 1
		fi
	done
}

# Every upstream registry and the test registry itself -> the test registry.
(REGISTRY="$NODE_E2E_REGISTRY" write_certs_d "$NE_CERTS_D")
# Both runtimes: one bridge network on the kubelet's pod CIDR.
(CNI_CONF_DIR="$NE_CNI_DIR" CNI_NETWORK_NAME=node-e2e CNI_BRIDGE=ne2ebr0 CNI_SUBNET="$NE_POD_CIDR" \
	CNI_IPAM_DIR="${NE_ROOT}/cni-ipam" write_cni_conf)

# run_suite TARGET ENDPOINT PROCESS PIDFILE: ginkgo + e2e_node.test into
# $NODE_E2E_OUT/TARGET. kubelet runs as the suite's child with every flag of
# run_local.go, plus: an empty --system-cgroups (otherwise kubelet moves every
# process of the machine's root cgroup into /system), cgroup v1 allowed, and
# systemd-run/journalctl hidden (no systemd as PID 1 here).
run_suite() {
	local target="$1" endpoint="$2" proc="$3" pidfile="$4" dir="${NODE_E2E_OUT}/$1" rc=0 p="${NODE_E2E_WORK}/nosystemd-path" d f n
	rm -rf "$dir"
	mkdir -p "$dir" "${dir}/work"
	if [[ ! -d "$p" ]]; then
		mkdir -p "$p.tmp"
		for d in /usr/local/go/bin /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
			for f in "$d"/*; do
				n="${f##*/}"
				case "$n" in systemd-run | journalctl) continue ;; esac
				[[ -e "$p.tmp/$n" ]] || ln -s "$f" "$p.tmp/$n"
			done
		done
		mv "$p.tmp" "$p"
	fi
	ports_free || die "kubelet's ports are in use (another kubelet or node e2e run?)"
	log "[$target] node e2e: focus '$NODE_E2E_FOCUS' (log ${dir}/build-log.txt)"
	local t0=$SECONDS
	(cd "${dir}/work" && env PATH="$p" KUBE_TEST_REPO_LIST="${REPO_ROOT}/test/nodee2e/repo-list.yaml" \
		"${NODE_E2E_BIN}/ginkgo" -timeout="$NODE_E2E_TIMEOUT" -nodes="$NODE_E2E_NODES" -no-color \
		-focus="$NODE_E2E_FOCUS" -skip="$NODE_E2E_SKIP" \
		-json-report=report.json -output-dir="$dir" \
		"${NODE_E2E_BIN}/e2e_node.test" -- \
		--v 2 --report-dir="$dir" --node-name "$(hostname)" \
		--dns-domain=cluster.local \
		--prepull-images=false \
		--container-runtime-endpoint="$endpoint" \
		--container-runtime-process-name="$proc" \
		--container-runtime-pid-file="$pidfile" \
		--kubelet-config-file="${REPO_ROOT}/test/nodee2e/kubelet-config.yaml" \
		--kubelet-flags="--cluster-domain=cluster.local --fail-cgroupv1=false --system-cgroups=") \
		>"${dir}/build-log.txt" 2>&1 || rc=$?
	echo "$rc $((SECONDS - t0))" >"${dir}/exit"
	log "[$target] done in $((SECONDS - t0))s, exit $rc: $(grep -E '^(Ran|FAIL!|SUCCESS!)' "${dir}/build-log.txt" | tr '\n' ' ')"
	# kubelet leaves its pods' mounts and state under /var/lib/kubelet
	umount_under /var/lib/kubelet/pods
}

umount_under() {
	local m
	for m in $(awk -v p="$1" 'index($5, p "/") == 1 {print $5}' /proc/self/mountinfo | sort -r); do
		umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
	done
}

# remove_dir DIR: rm -rf, unless something is still mounted below it.
remove_dir() {
	if awk -v p="$1" '$5 == p || index($5, p "/") == 1 {found=1} END {exit !found}' /proc/self/mountinfo; then
		log "WARNING: not removing $1: still mounted below it"
		return 0
	fi
	rm -rf "${1:?}"
}

# ---------------------------------------------------------------------------
# (a) private cri-containerd on the stack's containerd

a_crictl() { crictl --runtime-endpoint "$A_ENDPOINT" --image-endpoint "$A_ENDPOINT" "$@"; }

# shellcheck disable=SC2317 # EXIT trap
a_stop() {
	if is_running node-e2e-cri-containerd; then
		timeout 180 crictl --runtime-endpoint "$A_ENDPOINT" --timeout 60s rmp -af >/dev/null 2>&1 || log "WARNING: crictl rmp -af on the private daemon failed"
	fi
	stop_bg node-e2e-cri-containerd 30
	cleanup_containerd_ns "$CONTAINERD_ADDRESS" "$A_NAMESPACE"
	rmdir "${A_STATE}/runc/${A_NAMESPACE}" 2>/dev/null || true
	if [[ "$NODE_E2E_KEEP" != 1 ]]; then
		remove_dir "$A_STATE"
		remove_dir "$A_DIR"
		rm -f "$A_SOCKET"
	fi
	A_STARTED=0
}

run_cri_containerd() {
	local pidfile="${NE_STATE}/cri-containerd.pid"
	CRI_CONTAINERD_BIN="$A_BIN" build_daemon
	a_stop # leftovers of an interrupted run
	mkdir -p "$A_DIR" "$A_STATE"
	cat >"$A_CONFIG" <<EOF
# Generated by hack/node-e2e.sh: what the node e2e suite expects of a runtime.
socket_path = "${A_SOCKET}"
containerd_endpoint = "${CONTAINERD_ADDRESS}"
containerd_namespace = "${A_NAMESPACE}"
root_dir = "${A_DIR}"
state_dir = "${A_STATE}"
registry_config_path = "${NE_CERTS_D}"
sandbox_image = "${SANDBOX_IMAGE}"
network_conf_dir = "${NE_CNI_DIR}"
network_bin_dir = "${CNI_BIN_DIR}"
metrics_addr = ""
stream_port = "0"
cgroup_driver = "cgroupfs"

[nri]
  socket_path = "${A_STATE}/nri.sock"

[runtimes]
  [runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    root = "${A_STATE}/runc"
  [runtimes.test-handler]
    runtime_type = "io.containerd.runc.v2"
    root = "${A_STATE}/runc"
EOF
	A_STARTED=1
	start_bg node-e2e-cri-containerd "${NODE_E2E_OUT}/cri-containerd.log" "$A_BIN" --config "$A_CONFIG"
	wait_for "cri-containerd at $A_ENDPOINT" 300 node-e2e-cri-containerd a_crictl --timeout 5s info
	pid_of node-e2e-cri-containerd >"$pidfile"
	run_suite cri-containerd "$A_ENDPOINT" cri-containerd "$pidfile"
	a_stop
}

# ---------------------------------------------------------------------------
# (b) private containerd with its built-in CRI

b_crictl() { crictl --runtime-endpoint "$B_ENDPOINT" --image-endpoint "$B_ENDPOINT" "$@"; }

# shellcheck disable=SC2317 # EXIT trap
b_stop() {
	if is_running node-e2e-reference; then
		timeout 180 crictl --runtime-endpoint "$B_ENDPOINT" --timeout 60s rmp -af >/dev/null 2>&1 || log "WARNING: crictl rmp -af on the reference failed"
	fi
	stop_bg node-e2e-reference 30
	if [[ "$NODE_E2E_KEEP" != 1 ]]; then
		remove_dir "$B_STATE"
		remove_dir "$B_ROOT"
		rmdir "$B_SHIM_DIR" 2>/dev/null || true
	fi
	B_STARTED=0
}

run_reference() {
	local pidfile="${NE_STATE}/reference.pid" runc='    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]'
	b_stop
	mkdir -p "$B_STATE" "$B_ROOT"
	write_reference_config "$B_CONFIG" "$B_ROOT" "$B_STATE" "$B_SHIM_DIR" 0 "" \
		'config_path = "/etc/cri-containerd/certs.d"' "config_path = \"${NE_CERTS_D}\"" \
		'conf_dir = "/etc/cri-containerd/net.d"' "conf_dir = \"${NE_CNI_DIR}\"" \
		"$runc" "$(printf '%s\n      runtime_type = "io.containerd.runc.v2"\n      [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.test-handler.options]\n        Root = "%s/runc"\n%s' \
			"${runc/runtimes.runc/runtimes.test-handler}" "$B_STATE" "$runc")"
	B_STARTED=1
	start_bg node-e2e-reference "${NODE_E2E_OUT}/reference-containerd.log" containerd --config "$B_CONFIG"
	wait_for "reference containerd CRI at $B_ENDPOINT" 300 node-e2e-reference b_crictl --timeout 5s info
	pid_of node-e2e-reference >"$pidfile"
	run_suite reference "$B_ENDPOINT" containerd "$pidfile"
	b_stop
}

# shellcheck disable=SC2317 # EXIT trap
cleanup() {
	local rc=$?
	trap - EXIT
	set +e
	((A_STARTED)) && a_stop
	((B_STARTED)) && b_stop
	exit "$rc"
}
A_STARTED=0 B_STARTED=0
trap cleanup EXIT
trap 'exit 130' INT TERM

for target in $NODE_E2E_TARGETS; do
	case "$target" in
	cri-containerd) run_cri_containerd ;;
	reference) run_reference ;;
	esac
done

# ---------------------------------------------------------------------------
# the table

args=()
for target in $NODE_E2E_TARGETS; do args+=("${target}=${NODE_E2E_OUT}/${target}"); done
(cd "$REPO_ROOT" && go run ./test/nodee2e -fail-on-regression "${args[@]}") | tee "${NODE_E2E_OUT}/table.txt"
