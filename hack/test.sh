#!/usr/bin/env bash
# The project's test entry point (`make test`, and .ci/run).
#
#   hack/test.sh [all]    go vet, unit tests (-race), then (stack up) image
#                         smoke test, e2e tests, fuzzing (short), critest,
#                         the short fault campaign (hack/chaos.sh --short),
#                         the node e2e quick subset (when its binaries are cached)
#   hack/test.sh unit     go vet + unit tests (everything outside test/e2e)
#   hack/test.sh e2e      stack up + go test ./test/e2e/...
#   hack/test.sh critest  stack up + hack/critest.sh
#   hack/test.sh node-e2e stack up + the node e2e quick subset
#
# "stack up" is hack/up.sh without the demo: containerd, registry + images,
# a freshly built cri-containerd (restarted when its binary changed). The
# stack is left running afterwards (stop it with `make down`), unless
# TEST_STACK_DOWN=1.
#
# Environment contract for the e2e tests (go test ./test/e2e/...); values are
# the defaults from deploy/lib.sh:
#   CRI_ENDPOINT        unix:///run/cri-containerd/cri-containerd.sock  CRI gRPC endpoint of the running daemon
#   CRI_SOCKET          /run/cri-containerd/cri-containerd.sock         same, as a path
#   CONTAINERD_ADDRESS  /run/cri-containerd-stack/containerd.sock       containerd gRPC socket
#   CONTAINERD_NAMESPACE k8s.io                                         namespace cri-containerd uses
#   CONTAINERD_CONFIG   <repo>/deploy/containerd-config.toml
#   REGISTRY            127.0.0.1:5000                                  local registry (plain http), holds every test image
#   CERTS_D             /etc/cri-containerd/certs.d                     hosts.toml tree mapping all registries to REGISTRY
#   CNI_CONF_DIR        /etc/cri-containerd/net.d                       CNI config dir (10-cri-containerd.conflist)
#   CNI_BIN_DIR         /opt/cni/bin
#   CNI_SUBNET          10.231.0.0/16   CNI_BRIDGE cricbr0   CNI_IPAM_DIR /var/lib/cri-containerd-stack/cni-ipam
#   CRI_CONTAINERD_BIN  <repo>/_output/cri-containerd                   daemon binary (tests may start their own instance)
#   CRI_CONTAINERD_CONFIG <repo>/deploy/cri-containerd.toml             daemon --config file used by the stack
#   RUNC_BINARY         /opt/cri-containerd/bin/runc                    runc handler binary_name (v1.5.3; /usr/sbin/runc = Debian's 1.1.5)
#   SANDBOX_IMAGE       registry.k8s.io/pause:3.10.2
#   IMAGES_MANIFEST     <repo>/_output/e2e-images.json                  what test/e2e/images pushed (refs, digests)
#   STACK_ROOT, STACK_STATE, STACK_LOG_DIR, PID_DIR                    the stack's own dirs (see deploy/lib.sh)
# A test that starts its own daemon should use its own --socket-path,
# --root-dir and --state-dir (e.g. under t.TempDir()) and the same
# --containerd-endpoint/--registry-config-path/--network-* values.
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../deploy/lib.sh"
cd "$REPO_ROOT"

what="${1:-all}"

unit() {
	log "go vet ./..."
	go vet ./...
	local pkgs
	pkgs="$(go list ./... | grep -v '/test/e2e' || true)"
	if [[ -n "$pkgs" ]]; then
		log "unit tests (-race)"
		# shellcheck disable=SC2086 # one package per word
		go test -race -count=1 $pkgs
	fi
}

# The stack's daemon (and every private daemon the e2e tests start) is built
# with the race detector; races it reports fail the run (check_races).
export CRI_CONTAINERD_RACE="${CRI_CONTAINERD_RACE:-1}"
RACE_LOG_MARK=0

stack() {
	RACE_LOG_MARK="$(wc -l <"${STACK_LOG_DIR}/cri-containerd.log" 2>/dev/null || echo 0)"
	stack_up --with-daemon
	set -a
	# shellcheck disable=SC1090
	source <(stack_env)
	set +a
}

e2e() {
	log "e2e tests (go test ./test/e2e/...)"
	go test -v -count=1 -timeout 30m ./test/e2e/...
}

# check_races: the stack daemon's log since this run's stack() must hold no
# race report.
check_races() {
	local f="${STACK_LOG_DIR}/cri-containerd.log"
	[[ -f "$f" ]] || return 0
	if tail -n "+$((RACE_LOG_MARK + 1))" "$f" | grep -q 'WARNING: DATA RACE'; then
		log "the stack daemon reported a data race (see $f):"
		tail -n "+$((RACE_LOG_MARK + 1))" "$f" | grep -A40 -m1 'WARNING: DATA RACE' >&2
		return 1
	fi
}

# fuzz: each native `go test -fuzz` target briefly, then the live request
# fuzzer (test/fuzz) against a private daemon on the stack. `make fuzz` is
# the longer form (FUZZTIME, FUZZ_REQUESTS).
fuzz() {
	local t
	for t in server:FuzzValidateRequest spec:FuzzContainerSpecOpts spec:FuzzSandboxSpecOpts config:FuzzLoadFile; do
		log "go test -fuzz ${t#*:} (${FUZZTIME:-5s})"
		# A new input that widens coverage is minimized first, by default for
		# up to 60 s during which the run makes no progress: past -fuzztime
		# that ends the run with "context deadline exceeded".
		# Even bounded, a minimization or a slow input on a loaded machine can
		# still outlast -fuzztime (2026-12-06 17:38, FuzzLoadFile at 123
		# execs/s): "context deadline exceeded" with no failing input written
		# is the fuzzing engine's deadline, not a finding.
		local out
		out="$(mktemp)"
		if ! go test -run '^$' -fuzz "^${t#*:}\$" -fuzztime "${FUZZTIME:-5s}" -fuzzminimizetime "${FUZZMINIMIZETIME:-1s}" "./${t%%:*}/" 2>&1 | tee "$out"; then
			if grep -q 'context deadline exceeded' "$out" && ! grep -q 'Failing input written' "$out"; then
				log "fuzz ${t#*:}: the engine's deadline passed during a run (no failing input): not a finding"
			else
				rm -f "$out"
				return 1
			fi
		fi
		rm -f "$out"
	done
	log "live request fuzzer: ${CRI_FUZZ_REQUESTS:-1500} requests"
	CRI_FUZZ_REQUESTS="${CRI_FUZZ_REQUESTS:-1500}" go test -count=1 -v -timeout 30m -run TestLiveFuzz ./test/fuzz/
}

# node_e2e_quick: the node e2e quick subset (hack/node-e2e.sh NODE_E2E_QUICK=1:
# pods, probes, container runtime, lifecycle hooks, security context, logs)
# against a private cri-containerd, only when kubelet and e2e_node.test are
# cached (building them takes ~30 min: `make node-e2e-install`).
node_e2e_quick() {
	if ! "${REPO_ROOT}/hack/node-e2e-install.sh" --check; then
		log "node e2e quick subset SKIPPED: kubelet/e2e_node.test not cached in ${NODE_E2E_BIN:-/opt/node-e2e/bin} (make node-e2e-install builds them)"
		return 0
	fi
	log "node e2e quick subset (hack/node-e2e.sh, NODE_E2E_QUICK=1)"
	NODE_E2E_QUICK=1 NODE_E2E_TARGETS="${NODE_E2E_TARGETS:-cri-containerd}" "${REPO_ROOT}/hack/node-e2e.sh"
}

rc=0
case "$what" in
unit) unit ;;
e2e)
	stack
	e2e || rc=$?
	check_races || rc=1
	;;
critest)
	stack
	"${REPO_ROOT}/hack/critest.sh" || rc=$?
	check_races || rc=1
	;;
all)
	unit
	stack
	"${REPO_ROOT}/hack/verify-images.sh" || { rc=$?; log "image smoke test FAILED"; }
	e2e || { rc=$?; log "e2e tests FAILED"; }
	fuzz || { rc=$?; log "fuzz FAILED"; }
	"${REPO_ROOT}/hack/critest.sh" || { rc=$?; log "critest FAILED"; }
	check_races || { rc=1; log "race check FAILED"; }
	# The short fault campaign: a private containerd, daemon and CNI network
	# of its own, struck by daemon/containerd kill -9 and CNI faults.
	"${REPO_ROOT}/hack/chaos.sh" --short || { rc=$?; log "chaos (short) FAILED"; }
	node_e2e_quick || { rc=$?; log "node e2e (quick subset) FAILED"; }
	;;
fuzz)
	stack
	fuzz || rc=$?
	;;
node-e2e)
	stack
	node_e2e_quick || rc=$?
	;;
*) die "usage: $0 [all|unit|e2e|critest|fuzz|node-e2e]" ;;
esac

if [[ "${TEST_STACK_DOWN:-0}" == 1 && "$what" != unit ]]; then
	"${REPO_ROOT}/hack/down.sh"
fi
if ((rc)); then
	log "FAILED ($what)"
	exit "$rc"
fi
log "PASSED ($what)"
