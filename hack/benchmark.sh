#!/usr/bin/env bash
# Benchmarks cri-containerd against containerd 2.4.2's built-in CRI with
# `critest -benchmark` (cri-tools v1.37.0, `make benchmark`), in one run, on
# the same machine, with the same images, registry mirror, CNI config and
# sandbox image, then prints a table of medians and p90s per operation.
#
#   (a) a PRIVATE cri-containerd (freshly built _output/cri-containerd) on a
#       fresh private containerd (the stack's deploy/containerd-config.toml
#       with its own paths), with its own socket, root/state dirs, containerd
#       namespace ($BENCH_NAMESPACE), metrics port and pprof socket, so that
#       both sides start from an empty containerd (every containerd garbage
#       collection walks all of its namespaces: the stack's containerd also
#       holds the stack's and the tests' images) and neither shares its
#       containerd with other users' tests; with BENCH_CONTAINERD=shared, on
#       the stack's containerd instead;
#   (b) a PRIVATE containerd with its CRI plugin enabled, configured like
#       hack/reference.sh's (deploy/containerd-reference-config.toml) but
#       with its own paths, so it never meets hack/reference.sh's instance.
# The shared stack (containerd, registry, the stack's cri-containerd) is used,
# never started, restarted or changed: bring it up first (hack/up.sh).
#
# Parameters: deploy/benchmark-params.yaml (50 pods / 50 containers / 20
# images, 2 in parallel). critest's own JSON results land in
# _output/benchmark/<target>/round-N/*.json; the table goes to stdout and
# _output/benchmark.txt. Besides the times it reports, per daemon, VmRSS and
# VmHWM after the run, goroutines before and after (pprof), and what the run
# left behind (pods, containers, tasks, shims, CNI IP allocations, state
# dirs): anything but 0 there is a leak.
#
# Speed is reported, never asserted: other tests share the CPUs, so the
# numbers are noisy; compare the two columns of one run, not runs. The script
# fails only when critest fails or a daemon does not come up.
#
#   BENCH_TARGETS        "cri-containerd reference" (run order; either alone works)
#   BENCH_PARAMS         params file (default deploy/benchmark-params.yaml)
#   BENCH_NAMESPACE      containerd namespace of the private daemon (default cri-bench)
#   BENCH_CONTAINERD     private (default: a fresh containerd for cri-containerd alone,
#                        like B's) or shared (the stack's containerd)
#   BENCH_SETTLE         seconds to wait after critest before the "after" samples
#                        (default 35: longer than the 30 s idle timeout of the
#                        per-pull registry HTTP transports, whose keep-alive
#                        connections would otherwise count as goroutine leaks)
#   BENCH_CRITEST_ARGS   extra critest arguments
#   BENCH_SCALE          PODSxCONTAINERS of the scale section (default 100x5; 0 skips
#                        it): after critest, test/scale creates that many pods with
#                        that many running containers each from BENCH_SCALE_CLIENTS
#                        (default 4) concurrent clients, times the stats/list/status
#                        RPCs with everything running, tears it all down, and reports
#                        per-RPC latencies, pods/s, RSS, goroutines and CPU seconds,
#                        and the machine's CPU by owner (the CRI daemon, containerd,
#                        what each started: shims, runc, CNI plugins; the rest), from
#                        cgroup v1 cpuacct groups the processes are moved into for the
#                        section (accounting only; moved back after);
#                        the chart of both runtimes goes to _output/benchmark-scale.svg
#   BENCH_FLOOR_ROUNDS   rounds of the pod start floor section (default 20; 0 skips it):
#                        test/scale's `floor` times, interleaved, RunPodSandbox alone and
#                        what it must do by hand on the same containerd (netns + CNI ADD +
#                        pause task create + start), and reports the ratio (issue 9: <= 1.15x
#                        for cri-containerd)
#   BENCH_CRITEST_ROUNDS critest -benchmark runs per runtime (default 3), interleaved A B A B ...;
#                        the table pools the samples of all rounds (n = rounds x the params'
#                        counts) and lists each round's lifecycle ratios, which show the spread
#   BENCH_IDLE_WAIT      at most this many seconds (default 120) to wait before each timed
#                        section for the CPUs to be idle (busy < BENCH_IDLE_BUSY percent,
#                        default 15, over two consecutive 2 s windows): a section that starts
#                        right after a build, a teardown or the other runtime's run would
#                        otherwise pay for their leftover load, and the two runtimes would not
#                        be timed under the same conditions
#   BENCH_KEEP=1         keep the private daemons' dirs and logs (not the processes)
#
# critest's benchmark pods use no host ports and no host network (unlike the
# validation suite's 12000-12003), so this may run beside other critest/e2e
# runs; only one benchmark runs at a time (lock file).
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../deploy/lib.sh"

BENCH_TARGETS="${BENCH_TARGETS:-cri-containerd reference}"
BENCH_PARAMS="${BENCH_PARAMS:-${REPO_ROOT}/deploy/benchmark-params.yaml}"
BENCH_NAMESPACE="${BENCH_NAMESPACE:-cri-bench}"
BENCH_CONTAINERD="${BENCH_CONTAINERD:-private}"
BENCH_SETTLE="${BENCH_SETTLE:-35}"
BENCH_CRITEST_ARGS="${BENCH_CRITEST_ARGS:-}"
BENCH_KEEP="${BENCH_KEEP:-0}"
BENCH_SCALE="${BENCH_SCALE:-100x5}"
BENCH_SCALE_CLIENTS="${BENCH_SCALE_CLIENTS:-4}"
BENCH_FLOOR_ROUNDS="${BENCH_FLOOR_ROUNDS:-20}"
BENCH_IDLE_WAIT="${BENCH_IDLE_WAIT:-120}"
BENCH_CRITEST_ROUNDS="${BENCH_CRITEST_ROUNDS:-3}"
BENCH_IDLE_BUSY="${BENCH_IDLE_BUSY:-15}"
BUSYBOX_REF="${BUSYBOX_REF:-registry.k8s.io/e2e-test-images/busybox:1.29-2}"
BENCH_OUT="${BENCH_OUT:-${OUTPUT_DIR}/benchmark}"
BENCH_TABLE="${BENCH_TABLE:-${OUTPUT_DIR}/benchmark.txt}"
BENCH_STATE="${STACK_STATE}/bench"
BENCH_ROOT="${STACK_ROOT}/bench"

# (a) private cri-containerd
A_SOCKET="${BENCH_STATE}/cri.sock"
A_ENDPOINT="unix://${A_SOCKET}"
A_ROOT="${BENCH_ROOT}/cri"
A_STATE="${BENCH_STATE}/cri"
A_BIN="${BENCH_OUT}/bin/cri-containerd"
A_LOG="${BENCH_OUT}/cri-containerd.log"
# containerd of (a): the stack's, or (BENCH_CONTAINERD=private) one of its
# own, configured like the stack's with the paths below.
case "$BENCH_CONTAINERD" in
shared) A_CTRD_ADDRESS="$CONTAINERD_ADDRESS" ;;
private) A_CTRD_ADDRESS="${BENCH_STATE}/containerd.sock" ;;
*) die "BENCH_CONTAINERD must be shared or private" ;;
esac
A_CTRD_CONFIG="${BENCH_OUT}/containerd.toml"
A_CONFIG="${CRI_CONTAINERD_CONFIG:-${REPO_ROOT}/deploy/cri-containerd.toml}"
A_RUNC_ROOT="$(sed -n 's/^[[:space:]]*root[[:space:]]*=[[:space:]]*"\(.*\)".*/\1/p' "$A_CONFIG" 2>/dev/null | head -1)"
A_CTRD_LOG="${BENCH_OUT}/containerd.log"
# (b) private containerd with its CRI plugin; paths replace the ones of
# deploy/containerd-reference-config.toml. The shim socket dir must stay short.
B_ROOT="${BENCH_ROOT}/reference"
B_STATE="${BENCH_STATE}/reference"
B_SOCKET="${B_STATE}/containerd.sock"
B_ENDPOINT="unix://${B_SOCKET}"
B_DEBUG_SOCKET="${B_STATE}/debug.sock"
B_SHIM_DIR="${STACK_STATE}/bs"
B_CONFIG="${BENCH_OUT}/reference-containerd.toml"
B_LOG="${BENCH_OUT}/reference-containerd.log"
REF_CONFIG="${REF_CONFIG:-${REPO_ROOT}/deploy/containerd-reference-config.toml}"

[[ "$(id -u)" == 0 ]] || die "needs root"
command -v critest >/dev/null || die "critest not installed (deploy/install.sh)"
command -v jq >/dev/null || die "jq missing"
[[ -f "$BENCH_PARAMS" ]] || die "no params file $BENCH_PARAMS"
registry_up || die "registry ${REGISTRY} is not up (hack/up.sh)"
ctr_ version >/dev/null 2>&1 || die "containerd at $CONTAINERD_ADDRESS is not up (hack/up.sh)"
[[ -s "${CNI_CONF_DIR}/10-cri-containerd.conflist" ]] || die "no CNI config in $CNI_CONF_DIR (hack/up.sh)"
[[ -d "$CERTS_D" ]] || die "no registry hosts dir $CERTS_D (hack/up.sh)"
[[ "$BENCH_NAMESPACE" != "$CONTAINERD_NAMESPACE" ]] || die "BENCH_NAMESPACE must not be the stack's $CONTAINERD_NAMESPACE"

mkdir -p "$STACK_STATE" "$PID_DIR" "$BENCH_OUT"
exec 9>"${STACK_STATE}/benchmark.lock"
flock -n 9 || die "another hack/benchmark.sh is running"

# ---------------------------------------------------------------------------
# helpers

# free_port: a TCP port nothing listens on (checked, not reserved).
free_port() {
	local p i
	for ((i = 0; i < 200; i++)); do
		p=$((20000 + RANDOM % 20000))
		if [[ -z "$(ss -Htln "sport = :$p" 2>/dev/null)" ]]; then
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}

# mem_of PID: "VmRSS VmHWM" in MiB (one decimal).
mem_of() {
	awk '/^VmRSS:/ {r=$2} /^VmHWM:/ {h=$2} END {printf "%.1f %.1f\n", r/1024, h/1024}' "/proc/$1/status" 2>/dev/null || echo "? ?"
}

# goroutines CURL_ARGS... URL: the total from a debug=1 goroutine profile.
goroutines() {
	curl -fsS --max-time 10 "$@" 2>/dev/null | sed -n '1s/^goroutine profile: total \([0-9]*\).*/\1/p' | grep . || echo "?"
}

# shims_of ADDRESS NAMESPACE: runc shims a containerd at ADDRESS started for NAMESPACE.
shims_of() {
	local n=0 f cmd
	for f in /proc/[0-9]*/cmdline; do
		cmd="$(tr '\0' ' ' 2>/dev/null <"$f")" || continue
		[[ "$cmd" == *containerd-shim-runc-v2* && "$cmd" == *"-namespace $2 "* && "$cmd" == *"-address $1 "* ]] && n=$((n + 1))
	done
	echo "$n"
}

# ipam_leftovers DIR: CNI host-local allocations still held by a pod ID of
# the run (the podId meta info in critest's JSON files).
ipam_leftovers() {
	local dir="$1" ids n=0 f
	ids="$(jq -r '.datapoints[].metaInfo.podId // empty' "$dir"/*.json 2>/dev/null | sort -u)"
	[[ -n "$ids" && -d "${CNI_IPAM_DIR}/${CNI_NETWORK_NAME}" ]] || { echo 0; return; }
	for f in "${CNI_IPAM_DIR}/${CNI_NETWORK_NAME}"/*; do
		[[ -f "$f" ]] || continue
		grep -qxF -f <(echo "$ids") <(head -n1 "$f") 2>/dev/null && n=$((n + 1))
	done
	echo "$n"
}

# count_entries DIR...: entries directly below the given dirs.
count_entries() {
	local n=0 d
	for d in "$@"; do
		[[ -d "$d" ]] && n=$((n + $(find "$d" -mindepth 1 -maxdepth 1 | wc -l)))
	done
	echo "$n"
}

# mounts_under PREFIX: mount points at or below PREFIX.
mounts_under() { awk -v p="$1" '$5 == p || index($5, p "/") == 1 {print $5}' /proc/self/mountinfo; }

# remove_dir DIR: rm -rf, unless something is still mounted below it.
remove_dir() {
	local m
	m="$(mounts_under "$1")"
	if [[ -n "$m" ]]; then
		log "WARNING: not removing $1: still mounted: $(echo "$m" | head -3 | tr '\n' ' ')"
		return 0
	fi
	rm -rf "${1:?}"
}

declare -A R=() # results: R[target.key]

# cpu_busy_percent SECONDS: the share of all CPUs' time not idle (nor
# iowait) over the next SECONDS, from /proc/stat.
cpu_busy_percent() {
	local a b
	read -r -a a < <(head -1 /proc/stat)
	sleep "$1"
	read -r -a b < <(head -1 /proc/stat)
	local total=0 idle i
	for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
	idle=$((b[4] - a[4] + b[5] - a[5]))
	((total > 0)) || { echo 0; return; }
	echo $(((total - idle) * 100 / total))
}

# wait_idle WHAT: waits (at most BENCH_IDLE_WAIT seconds) until the CPUs
# are idle, so that WHAT starts under the same conditions for both runtimes;
# records the busy share it started at.
wait_idle() {
	local what="$1" t0=$SECONDS busy calm=0
	while ((SECONDS - t0 < BENCH_IDLE_WAIT)); do
		busy="$(cpu_busy_percent 2)"
		if ((busy < BENCH_IDLE_BUSY)); then
			calm=$((calm + 1))
			((calm >= 2)) && break
		else
			calm=0
		fi
	done
	((calm >= 2)) || log "WARNING: CPUs still ${busy}% busy after ${BENCH_IDLE_WAIT}s; starting ${what} anyway"
	R[$what.busy_before]="${busy}%"
}

# run_scale TARGET ENDPOINT PID METRICS_URL [ACCOUNT...]: the scale section
# (test/scale) into $BENCH_OUT/TARGET/scale.json; each ACCOUNT (NAME=PID)
# has its CPU and its children's split out. Its failure is reported, not
# fatal.
run_scale() {
	local target=$1 endpoint=$2 pid=$3 metrics=${4:-} dir="${BENCH_OUT}/${target}" a accounts=()
	for a in "${@:5}"; do accounts+=(--account "$a"); done
	[[ "$BENCH_SCALE" == 0 ]] && return 0
	local pods="${BENCH_SCALE%x*}" ctrs="${BENCH_SCALE#*x}"
	wait_idle "$target.scale"
	log "[$target] scale: ${pods} pods x ${ctrs} containers, ${BENCH_SCALE_CLIENTS} clients (log ${dir}/scale.log)"
	if "$SCALE_BIN" run --name "$target" --endpoint "$endpoint" --pid "$pid" ${metrics:+--metrics-url "$metrics"} "${accounts[@]}" \
		--pods "$pods" --containers "$ctrs" --clients "$BENCH_SCALE_CLIENTS" --image "$BUSYBOX_REF" \
		--out "${dir}/scale.json" >"${dir}/scale.log" 2>&1; then
		log "[$target] scale OK"
	else
		log "[$target] scale FAILED:"
		tail -5 "${dir}/scale.log" >&2
		R[$target.rc]=1
	fi
}

# run_critest TARGET ENDPOINT: critest -benchmark into $BENCH_OUT/TARGET.
# run_floor TARGET ENDPOINT CONTAINERD_SOCKET NAMESPACE: the pod start floor
# section (test/scale floor) into $BENCH_OUT/TARGET/floor.json; its failure is
# reported, not fatal.
run_floor() {
	local target="$1" endpoint="$2" ctrd="$3" ns="$4" dir="${BENCH_OUT}/$1"
	[[ "$BENCH_FLOOR_ROUNDS" == 0 ]] && return 0
	wait_idle "$target.floor"
	log "[$target] pod start floor: ${BENCH_FLOOR_ROUNDS} rounds (log ${dir}/floor.log)"
	if "$SCALE_BIN" floor --name "$target" --endpoint "$endpoint" --containerd "$ctrd" --namespace "$ns" \
		--sandbox-image "$SANDBOX_IMAGE" --runc "$RUNC_BINARY" --cni-conf-dir "$CNI_CONF_DIR" \
		--cni-bin-dir "$CNI_BIN_DIR" --netns-dir "${BENCH_STATE}/floor-netns" --rounds "$BENCH_FLOOR_ROUNDS" \
		--out "${dir}/floor.json" >"${dir}/floor.log" 2>&1; then
		log "[$target] floor OK"
	else
		log "[$target] floor FAILED:"
		tail -5 "${dir}/floor.log" >&2
	fi
}

run_critest() {
	local target="$1" endpoint="$2" round="$3" rc=0
	local dir="${BENCH_OUT}/$1/round-$3"
	rm -rf "$dir"
	mkdir -p "$dir"
	local args=(--runtime-endpoint "$endpoint" --image-endpoint "$endpoint"
		-benchmark --benchmarking-params-file "$BENCH_PARAMS" --benchmarking-output-dir "$dir"
		--ginkgo.no-color --ginkgo.seed 1 --ginkgo.json-report "${dir}/ginkgo-report.json")
	if [[ -n "$BENCH_CRITEST_ARGS" ]]; then
		# shellcheck disable=SC2206 # word splitting intended
		args+=($BENCH_CRITEST_ARGS)
	fi
	wait_idle "$target.critest.$round"
	((round == 1)) && R[$target.critest.busy_before]="${R[$target.critest.$round.busy_before]}"
	log "[$target] critest round ${round}/${BENCH_CRITEST_ROUNDS}: ${args[*]} (log ${dir}/critest.log)"
	((round == 1)) && R[$target.load_before]="$(cut -d' ' -f1-3 /proc/loadavg)"
	local t0=$SECONDS
	(cd "$dir" && critest "${args[@]}") >"${dir}/critest.log" 2>&1 || rc=$?
	R[$target.secs]=$((${R[$target.secs]:-0} + SECONDS - t0))
	R[$target.load_after]="$(cut -d' ' -f1-3 /proc/loadavg)"
	((rc > ${R[$target.rc]:-0})) && R[$target.rc]=$rc
	R[$target.rc]="${R[$target.rc]:-0}"
	R[$target.summary]="$(jq -rs '[.[][].SpecReports[] | select(.LeafNodeType == "It" and .State != "skipped") | .State]
		| group_by(.) | map("\(length) \(.[0])") | join(", ")' "${BENCH_OUT}/${target}"/round-*/ginkgo-report.json 2>/dev/null || echo "no report")"
	if ((rc != 0)); then
		log "[$target] critest FAILED (exit $rc):"
		grep -E '^\s*\[(FAIL|PANICKED)\]|^\s*(Expected|Unexpected error)|rpc error' "${dir}/critest.log" | head -20 >&2 || true
	else
		log "[$target] critest round ${round} OK in $((SECONDS - t0))s"
	fi
}

# ---------------------------------------------------------------------------
# (a) private cri-containerd

a_crictl() { crictl --runtime-endpoint "$A_ENDPOINT" --image-endpoint "$A_ENDPOINT" "$@"; }

a_cleanup_ns() { cleanup_containerd_ns "$A_CTRD_ADDRESS" "$BENCH_NAMESPACE"; }

# shellcheck disable=SC2317 # called by the EXIT trap
a_stop() {
	if is_running bench-cri-containerd; then
		timeout 180 crictl --runtime-endpoint "$A_ENDPOINT" --timeout 60s rmp -af >/dev/null 2>&1 || log "WARNING: crictl rmp -af on the private daemon failed"
		timeout 120 crictl --image-endpoint "$A_ENDPOINT" --runtime-endpoint "$A_ENDPOINT" --timeout 60s rmi -a >/dev/null 2>&1 || true
	fi
	stop_bg bench-cri-containerd 30
	a_cleanup_ns
	# runc's per-namespace state dir under the runc root of the daemon config
	[[ -z "$A_RUNC_ROOT" ]] || rmdir "${A_RUNC_ROOT}/${BENCH_NAMESPACE}" 2>/dev/null || true
	if [[ "$BENCH_CONTAINERD" == private ]]; then
		stop_bg bench-containerd 30
	fi
	if [[ "$BENCH_KEEP" != 1 ]]; then
		remove_dir "$A_STATE"
		remove_dir "$A_ROOT"
		if [[ "$BENCH_CONTAINERD" == private ]]; then
			remove_dir "${BENCH_STATE}/containerd"
			remove_dir "${BENCH_ROOT}/containerd"
			remove_dir "${BENCH_ROOT}/containerd-opt"
			rm -f "${BENCH_STATE}/containerd.sock" "${BENCH_STATE}/containerd.sock.ttrpc" "${BENCH_STATE}/containerd-debug.sock"
			rmdir "${STACK_STATE}/ba" 2>/dev/null || true
		fi
		rm -f "$A_SOCKET"
		rm -rf "$(dirname "$A_BIN")"
	fi
	A_STARTED=0
}

# a_start: (a) up, its "before" samples taken.
a_start() {
	local t=cri-containerd pid port
	rm -rf "${BENCH_OUT}/${t}"
	mkdir -p "${BENCH_OUT}/${t}"
	build_daemon
	mkdir -p "$(dirname "$A_BIN")"
	cp "$CRI_CONTAINERD_BIN" "$A_BIN" # the stack may rebuild _output/cri-containerd meanwhile
	cp "$(dirname "$CRI_CONTAINERD_BIN")/cri-containerd-log-writer" "$(dirname "$A_BIN")/" # the shim log writer
	if [[ "$BENCH_CONTAINERD" == private ]]; then
		stop_bg bench-containerd 30 # one left by an interrupted run
		remove_dir "${BENCH_STATE}/containerd"
		remove_dir "${BENCH_ROOT}/containerd"
		mkdir -p "$BENCH_STATE" "$BENCH_ROOT"
		subst_config "$CONTAINERD_CONFIG" "$A_CTRD_CONFIG" \
			"/var/lib/cri-containerd-stack/containerd" "${BENCH_ROOT}/containerd" \
			"/run/cri-containerd-stack/containerd" "${BENCH_STATE}/containerd" \
			'socket_dir = "/run/cri-containerd-stack/s"' "socket_dir = \"${STACK_STATE}/ba\"" \
			"/var/lib/cri-containerd-stack/opt" "${BENCH_ROOT}/containerd-opt"
		: >"$A_CTRD_LOG"
		A_STARTED=1
		start_bg bench-containerd "$A_CTRD_LOG" containerd --config "$A_CTRD_CONFIG"
		wait_for "private containerd at $A_CTRD_ADDRESS" 60 bench-containerd ctr --address "$A_CTRD_ADDRESS" version
	fi
	a_cleanup_ns # a namespace left by an interrupted run
	remove_dir "$A_STATE"
	remove_dir "$A_ROOT"
	mkdir -p "$A_STATE" "$A_ROOT" "$(dirname "$A_SOCKET")"
	port="$(free_port)"
	: >"$A_LOG"
	A_STARTED=1
	start_bg bench-cri-containerd "$A_LOG" "$A_BIN" \
		--config "$A_CONFIG" \
		--containerd-endpoint "$A_CTRD_ADDRESS" \
		--containerd-namespace "$BENCH_NAMESPACE" \
		--registry-config-path "$CERTS_D" \
		--network-conf-dir "$CNI_CONF_DIR" \
		--network-bin-dir "$CNI_BIN_DIR" \
		--socket-path "$A_SOCKET" \
		--root-dir "$A_ROOT" \
		--state-dir "$A_STATE" \
		--sandbox-image "$SANDBOX_IMAGE" \
		--nri-socket "${A_STATE}/nri.sock" \
		--metrics-addr "127.0.0.1:${port}" \
		--pprof-addr "unix://${A_STATE}/pprof.sock" \
		--stream-port 0
	wait_for "private cri-containerd at $A_ENDPOINT" 90 bench-cri-containerd a_crictl --timeout 5s info
	pid="$(pid_of bench-cri-containerd)"
	local pprof=(--unix-socket "${A_STATE}/pprof.sock" "http://localhost/debug/pprof/goroutine?debug=1")
	R[$t.pid]="$pid"
	R[$t.goroutines_before]="$(goroutines "${pprof[@]}")"
	R[$t.mem_before]="$(mem_of "$pid")"
	R[$t.metrics]="http://127.0.0.1:${port}/metrics"
}

a_critest() { run_critest cri-containerd "$A_ENDPOINT" "$1"; }

a_scale() {
	local pid ctrd_pid
	pid="$(pid_of bench-cri-containerd)"
	if [[ "$BENCH_CONTAINERD" == private ]]; then ctrd_pid="$(pid_of bench-containerd)"; else ctrd_pid="$(pid_of containerd)"; fi
	run_scale cri-containerd "$A_ENDPOINT" "$pid" "${R[cri-containerd.metrics]}" "cri-containerd=$pid" ${ctrd_pid:+"containerd=$ctrd_pid"}
}

a_floor() { run_floor cri-containerd "$A_ENDPOINT" "$A_CTRD_ADDRESS" "$BENCH_NAMESPACE"; }

# a_finish: the "after" samples of (a) (BENCH_SETTLE waited by the caller), then its stop.
a_finish() {
	local t=cri-containerd pid dir="${BENCH_OUT}/cri-containerd"
	pid="$(pid_of bench-cri-containerd)"
	local pprof=(--unix-socket "${A_STATE}/pprof.sock" "http://localhost/debug/pprof/goroutine?debug=1")
	R[$t.goroutines_after]="$(goroutines "${pprof[@]}")"
	curl -fsS --max-time 10 "${pprof[@]}" >"${dir}/goroutines-after.txt" 2>/dev/null || true
	R[$t.mem_after]="$(mem_of "$pid")"
	R[$t.left_pods]="$(a_crictl pods -q 2>/dev/null | wc -l)"
	R[$t.left_ctrs]="$(a_crictl ps -aq 2>/dev/null | wc -l)"
	R[$t.left_tasks]="$(ctr --address "$A_CTRD_ADDRESS" -n "$BENCH_NAMESPACE" tasks ls -q 2>/dev/null | wc -l)"
	R[$t.left_cctrs]="$(ctr --address "$A_CTRD_ADDRESS" -n "$BENCH_NAMESPACE" containers ls -q 2>/dev/null | wc -l)"
	R[$t.left_shims]="$(shims_of "$A_CTRD_ADDRESS" "$BENCH_NAMESPACE")"
	R[$t.left_ipam]="$(ipam_leftovers "$dir")"
	R[$t.left_dirs]="$(count_entries "$A_STATE/netns" "$A_STATE/sandboxes" "$A_STATE/containers" "$A_ROOT/sandboxes" "$A_ROOT/containers")"
	R[$t.left_mounts]="$(mounts_under "$A_STATE" | wc -l)"
	R[$t.errors]="$(grep -cE '^E[0-9]{4} ' "$A_LOG" || true)"
	a_stop
}

# ---------------------------------------------------------------------------
# (b) private containerd with its built-in CRI

b_crictl() { crictl --runtime-endpoint "$B_ENDPOINT" --image-endpoint "$B_ENDPOINT" "$@"; }

# shellcheck disable=SC2317 # called by the EXIT trap
b_stop() {
	if is_running bench-reference-containerd; then
		timeout 180 crictl --runtime-endpoint "$B_ENDPOINT" --timeout 60s rmp -af >/dev/null 2>&1 || log "WARNING: crictl rmp -af on the reference failed"
		timeout 120 crictl --image-endpoint "$B_ENDPOINT" --runtime-endpoint "$B_ENDPOINT" --timeout 60s rmi -a >/dev/null 2>&1 || true
	fi
	stop_bg bench-reference-containerd 30
	if [[ "$BENCH_KEEP" != 1 ]]; then
		remove_dir "$B_STATE"
		remove_dir "$B_ROOT"
		rmdir "$B_SHIM_DIR" 2>/dev/null || true
	fi
	B_STARTED=0
}

# write_b_config PORT: deploy/containerd-reference-config.toml with this
# benchmark's own paths, a debug socket (pprof) and stream port PORT.
# Both runtimes run their containers with the same runc (RUNC_BINARY, the
# stack's): the comparison is of the CRI layers, not of runc versions.
write_b_config() {
	local opts='[plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]'
	write_reference_config "$B_CONFIG" "$B_ROOT" "$B_STATE" "$B_SHIM_DIR" "$1" "$B_DEBUG_SOCKET" \
		"$opts" "$(printf '%s\n        BinaryName = "%s"' "$opts" "$RUNC_BINARY")"
}

# b_start: (b) up, its "before" samples taken.
b_start() {
	local t=reference pid
	rm -rf "${BENCH_OUT}/${t}"
	mkdir -p "${BENCH_OUT}/${t}"
	stop_bg bench-reference-containerd 30 # one left by an interrupted run
	remove_dir "$B_STATE"
	remove_dir "$B_ROOT"
	mkdir -p "$B_STATE" "$B_ROOT"
	write_b_config "$(free_port)"
	: >"$B_LOG"
	B_STARTED=1
	start_bg bench-reference-containerd "$B_LOG" containerd --config "$B_CONFIG"
	wait_for "reference containerd CRI at $B_ENDPOINT" 90 bench-reference-containerd b_crictl --timeout 5s info
	pid="$(pid_of bench-reference-containerd)"
	local pprof=(--unix-socket "$B_DEBUG_SOCKET" "http://localhost/debug/pprof/goroutine?debug=1")
	R[$t.pid]="$pid"
	R[$t.goroutines_before]="$(goroutines "${pprof[@]}")"
	R[$t.mem_before]="$(mem_of "$pid")"
}

b_critest() { run_critest reference "$B_ENDPOINT" "$1"; }

b_scale() {
	local pid
	pid="$(pid_of bench-reference-containerd)"
	run_scale reference "$B_ENDPOINT" "$pid" "" "containerd=$pid"
}

b_floor() { run_floor reference "$B_ENDPOINT" "$B_SOCKET" k8s.io; }

# b_finish: the "after" samples of (b) (BENCH_SETTLE waited by the caller), then its stop.
b_finish() {
	local t=reference pid dir="${BENCH_OUT}/reference"
	pid="$(pid_of bench-reference-containerd)"
	local pprof=(--unix-socket "$B_DEBUG_SOCKET" "http://localhost/debug/pprof/goroutine?debug=1")
	R[$t.goroutines_after]="$(goroutines "${pprof[@]}")"
	curl -fsS --max-time 10 "${pprof[@]}" >"${dir}/goroutines-after.txt" 2>/dev/null || true
	R[$t.mem_after]="$(mem_of "$pid")"
	R[$t.left_pods]="$(b_crictl pods -q 2>/dev/null | wc -l)"
	R[$t.left_ctrs]="$(b_crictl ps -aq 2>/dev/null | wc -l)"
	R[$t.left_tasks]="$(ctr --address "$B_SOCKET" -n k8s.io tasks ls -q 2>/dev/null | wc -l)"
	R[$t.left_cctrs]="$(ctr --address "$B_SOCKET" -n k8s.io containers ls -q 2>/dev/null | wc -l)"
	R[$t.left_shims]="$(shims_of "$B_SOCKET" k8s.io)"
	R[$t.left_ipam]="$(ipam_leftovers "$dir")"
	R[$t.left_dirs]="-"
	R[$t.left_mounts]="$(mounts_under "$B_STATE" | wc -l)"
	R[$t.errors]="$(grep -c 'level=error' "$B_LOG" || true)"
	b_stop
}

# shellcheck disable=SC2317 # EXIT trap
cleanup() {
	local rc=$?
	trap - EXIT
	set +e
	((A_STARTED)) && a_stop
	((B_STARTED)) && b_stop
	rmdir "$BENCH_STATE" "$BENCH_ROOT" 2>/dev/null # when empty
	exit "$rc"
}
A_STARTED=0 B_STARTED=0
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---------------------------------------------------------------------------
# run

SCALE_BIN="${BENCH_OUT}/scale-bin/scale"
if [[ "$BENCH_SCALE" != 0 || "$BENCH_FLOOR_ROUNDS" != 0 ]]; then
	[[ "$BENCH_SCALE" == 0 || "$BENCH_SCALE" =~ ^[0-9]+x[0-9]+$ ]] || die "BENCH_SCALE must be PODSxCONTAINERS (e.g. 100x5) or 0"
	log "building the scale driver (test/scale)"
	(cd "$REPO_ROOT" && go build -o "$SCALE_BIN" ./test/scale)
fi

# Both daemons are up at once and each section alternates between them
# (critest rounds interleaved A B A B ...), so that a disturbance of the
# machine at one moment does not fall on one runtime only.
prefix() { case "$1" in cri-containerd) echo a ;; reference) echo b ;; *) die "unknown target $1 (cri-containerd, reference)" ;; esac; }
for target in $BENCH_TARGETS; do prefix "$target" >/dev/null; done
for target in $BENCH_TARGETS; do "$(prefix "$target")_start"; done
for ((round = 1; round <= BENCH_CRITEST_ROUNDS; round++)); do
	for target in $BENCH_TARGETS; do "$(prefix "$target")_critest" "$round"; done
done
for target in $BENCH_TARGETS; do "$(prefix "$target")_scale"; done
for target in $BENCH_TARGETS; do "$(prefix "$target")_floor"; done
sleep "$BENCH_SETTLE"
for target in $BENCH_TARGETS; do "$(prefix "$target")_finish"; done

# ---------------------------------------------------------------------------
# table

# stats FILE OPERATION: "n median p90" in milliseconds over the samples of
# every critest round's FILE (round-*/FILE); OPERATION "*" is the whole
# lifecycle (endTime - startTime of each sample). A FILE with a directory
# part names one file.
stats() {
	local files
	if [[ "$1" == */round-*/* ]]; then files=("$1"); else files=("$(dirname "$1")"/round-*/"$(basename "$1")"); fi
	[[ -s "${files[0]}" ]] || { echo "0 - -"; return; }
	jq -rs --arg op "$2" '
		def med: sort | length as $n
			| if $n == 0 then null elif $n % 2 == 1 then .[($n - 1) / 2] else (.[$n / 2 - 1] + .[$n / 2]) / 2 end;
		def p90: sort | length as $n | if $n == 0 then null else .[((0.9 * $n) | ceil) - 1] end;
		def ms: if . == null then "-" else (. / 1e6 * 100 | round / 100 | tostring) end;
		[.[] | (.operationsNames | index($op)) as $i
			| .datapoints[] | if $op == "*" then .endTime - .startTime elif $i == null then empty else .operationsDurationsNs[$i] end] as $v
		| "\($v | length) \($v | med | ms) \($v | p90 | ms)"' "${files[@]}" 2>/dev/null || echo "0 - -"
}

# scratch TARGET: the median of the rounds' single "create PodSandbox and
# container" samples (ms).
scratch() {
	local f=("${BENCH_OUT}/$1"/round-*/ginkgo-report.json)
	[[ -s "${f[0]}" ]] || { echo "-"; return; }
	jq -rs '[.[][].SpecReports[]?.ReportEntries[]? | select(.Name == "start-container-benchmark")
		| .Value.AsJSON | fromjson | .Measurements[]? | select(.Name == "create PodSandbox and container")
		| .Durations[0]?] | sort | if length == 0 then "-" else (.[(length - 1) / 2 | floor] / 1e6 * 100 | round / 100 | tostring) end' "${f[@]}" 2>/dev/null || echo "-"
}

# round_ratios FILE: each critest round's lifecycle median ratio A/B.
round_ratios() {
	local r out=() a b
	for ((r = 1; r <= BENCH_CRITEST_ROUNDS; r++)); do
		read -r _ a _ <<<"$(stats "${BENCH_OUT}/cri-containerd/round-${r}/$1" '*')"
		read -r _ b _ <<<"$(stats "${BENCH_OUT}/reference/round-${r}/$1" '*')"
		out+=("$(ratio "$a" "$b")")
	done
	echo "${out[*]}"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a+0 > 0 && b+0 > 0) printf "%.2f", a / b; else printf "-" }'; }

rows=(
	"container create|container_benchmark_data.json|CreateContainer"
	"container start|container_benchmark_data.json|StartContainer"
	"container status|container_benchmark_data.json|StatusContainer"
	"container stop|container_benchmark_data.json|StopContainer"
	"container remove|container_benchmark_data.json|RemoveContainer"
	"container lifecycle|container_benchmark_data.json|*"
	"pod create (RunPodSandbox)|pod_benchmark_data.json|CreatePod"
	"pod status|pod_benchmark_data.json|StatusPod"
	"pod stop|pod_benchmark_data.json|StopPod"
	"pod remove|pod_benchmark_data.json|RemovePod"
	"pod lifecycle|pod_benchmark_data.json|*"
	"image pull|image_lifecycle_benchmark_data.json|PullImage"
	"image status|image_lifecycle_benchmark_data.json|StatusImage"
	"image remove|image_lifecycle_benchmark_data.json|RemoveImage"
	"image lifecycle|image_lifecycle_benchmark_data.json|*"
	"ListImages|image_listing_benchmark_data.json|ListImages"
)

col() { [[ " $BENCH_TARGETS " == *" $1 "* ]]; }
v() { echo "${R[$1]:--}"; }

{
	echo "critest -benchmark (cri-tools v1.37.0), $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, params $(basename "$BENCH_PARAMS"):"
	echo "  $(grep -E '^(containers|pods|images)Number(Parallel)?:' "$BENCH_PARAMS" | tr -d ' ' | paste -sd' ')"
	if [[ "$BENCH_CONTAINERD" == private ]]; then
		on="on a private containerd configured like the stack's"
	else
		on="on the stack's containerd, which other tests use too"
	fi
	echo "  A = cri-containerd $(git -C "$REPO_ROOT" describe --always --dirty 2>/dev/null || echo '?') (private instance, namespace $BENCH_NAMESPACE, $on)"
	echo "  B = containerd $(containerd --version 2>/dev/null | awk '{print $3}') built-in CRI (private instance, $(basename "$REF_CONFIG") paths)"
	echo "  Both run containers with runc $("$RUNC_BINARY" --version 2>/dev/null | awk 'NR==1{print $3}') ($RUNC_BINARY)."
	echo "  Times in ms; lifecycle = first call start to last call end of one sample. ratio = A/B median."
	echo "  n pools ${BENCH_CRITEST_ROUNDS} critest rounds per runtime, interleaved A B A B ...; each started on idle CPUs."
	echo "  The CPUs are shared with other tests running at the same time: numbers are noisy, compare within one run."
	echo
	printf '%-28s | %4s %9s %9s | %4s %9s %9s | %6s\n' "operation" "n" "A median" "A p90" "n" "B median" "B p90" "ratio"
	printf '%s\n' "-----------------------------+--------------------------+--------------------------+-------"
	for row in "${rows[@]}"; do
		IFS='|' read -r name file op <<<"$row"
		read -r an amed ap90 <<<"$(stats "${BENCH_OUT}/cri-containerd/${file}" "$op")"
		read -r bn bmed bp90 <<<"$(stats "${BENCH_OUT}/reference/${file}" "$op")"
		col cri-containerd || { an=0 amed=- ap90=-; }
		col reference || { bn=0 bmed=- bp90=-; }
		printf '%-28s | %4s %9s %9s | %4s %9s %9s | %6s\n' "$name" "$an" "$amed" "$ap90" "$bn" "$bmed" "$bp90" "$(ratio "$amed" "$bmed")"
	done
	a1="$(col cri-containerd && scratch cri-containerd || echo -)"
	b1="$(col reference && scratch reference || echo -)"
	printf '%-28s | %4s %9s %9s | %4s %9s %9s | %6s\n' "pod+container from scratch" "$BENCH_CRITEST_ROUNDS" "$a1" "" "$BENCH_CRITEST_ROUNDS" "$b1" "" "$(ratio "$a1" "$b1")"
	if col cri-containerd && col reference; then
		echo
		echo "  lifecycle ratio of each round (A B interleaved, ${BENCH_CRITEST_ROUNDS} rounds):"
		echo "    container $(round_ratios container_benchmark_data.json); pod $(round_ratios pod_benchmark_data.json); image $(round_ratios image_lifecycle_benchmark_data.json)"
	fi
	echo
	printf '%-34s | %-24s | %-24s\n' "daemon" "A cri-containerd" "B containerd+CRI"
	printf '%s\n' "-----------------------------------+--------------------------+-------------------------"
	row2() { printf '%-34s | %-24s | %-24s\n' "$1" "$2" "$3"; }
	row2 "pid" "$(v cri-containerd.pid)" "$(v reference.pid)"
	row2 "critest" "$(v cri-containerd.summary) (exit $(v cri-containerd.rc))" "$(v reference.summary) (exit $(v reference.rc))"
	row2 "critest wall time (s, all rounds)" "$(v cri-containerd.secs)" "$(v reference.secs)"
	row2 "load average before / after" "$(v cri-containerd.load_before) / $(v cri-containerd.load_after)" "$(v reference.load_before) / $(v reference.load_after)"
	row2 "CPU busy before critest/scale/floor" "$(v cri-containerd.critest.busy_before) / $(v cri-containerd.scale.busy_before) / $(v cri-containerd.floor.busy_before)" "$(v reference.critest.busy_before) / $(v reference.scale.busy_before) / $(v reference.floor.busy_before)"
	read -r ar0 _ <<<"$(v cri-containerd.mem_before)"
	read -r br0 _ <<<"$(v reference.mem_before)"
	read -r ar ah <<<"$(v cri-containerd.mem_after)"
	read -r br bh <<<"$(v reference.mem_after)"
	row2 "VmRSS before run (MiB)" "${ar0:--}" "${br0:--}"
	row2 "VmRSS after run (MiB)" "${ar:--}" "${br:--}"
	row2 "VmHWM peak (MiB)" "${ah:--}" "${bh:--}"
	row2 "goroutines before / after" "$(v cri-containerd.goroutines_before) / $(v cri-containerd.goroutines_after)" "$(v reference.goroutines_before) / $(v reference.goroutines_after)"
	row2 "left: pods / containers (CRI)" "$(v cri-containerd.left_pods) / $(v cri-containerd.left_ctrs)" "$(v reference.left_pods) / $(v reference.left_ctrs)"
	row2 "left: containerd ctrs / tasks" "$(v cri-containerd.left_cctrs) / $(v cri-containerd.left_tasks)" "$(v reference.left_cctrs) / $(v reference.left_tasks)"
	row2 "left: shims / CNI IPs / mounts" "$(v cri-containerd.left_shims) / $(v cri-containerd.left_ipam) / $(v cri-containerd.left_mounts)" "$(v reference.left_shims) / $(v reference.left_ipam) / $(v reference.left_mounts)"
	row2 "left: state-dir entries" "$(v cri-containerd.left_dirs)" "$(v reference.left_dirs)"
	row2 "error lines in daemon log" "$(v cri-containerd.errors)" "$(v reference.errors)"
	echo
	echo "  A's RSS is cri-containerd alone (without its containerd); B's is containerd with"
	echo "  everything in it. \"left\" is counted ${BENCH_SETTLE}s after the last section ended, before this script's cleanup."
	echo "  Raw data: ${BENCH_OUT}/{cri-containerd,reference}/ (round-N/: critest JSON and log; scale, floor, goroutines-after.txt)."
} | tee "$BENCH_TABLE"

scale_results=()
for target in $BENCH_TARGETS; do
	[[ -s "${BENCH_OUT}/${target}/scale.json" ]] && scale_results+=("${BENCH_OUT}/${target}/scale.json")
done
if ((${#scale_results[@]})); then
	{
		echo
		"$SCALE_BIN" report --svg "${OUTPUT_DIR}/benchmark-scale.svg" "${scale_results[@]}"
		echo
		echo "  Chart: ${OUTPUT_DIR}/benchmark-scale.svg. RSS and CPU: cri-containerd alone vs containerd with its CRI."
	} | tee -a "$BENCH_TABLE"
fi
floor_results=()
for target in $BENCH_TARGETS; do
	[[ -s "${BENCH_OUT}/${target}/floor.json" ]] && floor_results+=("${BENCH_OUT}/${target}/floor.json")
done
if ((${#floor_results[@]})); then
	{
		echo
		"$SCALE_BIN" floor-report "${floor_results[@]}"
	} | tee -a "$BENCH_TABLE"
fi

fail=0
for target in $BENCH_TARGETS; do
	[[ "${R[$target.rc]:-1}" == 0 ]] || { log "critest -benchmark failed against $target (see ${BENCH_OUT}/${target}/critest.log)"; fail=1; }
done
log "table written to $BENCH_TABLE"
exit "$fail"
