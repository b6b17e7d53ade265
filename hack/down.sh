#!/usr/bin/env bash
# Stops the runtime stack that hack/up.sh started (`make down`), by PID file
# only (/run/cri-containerd-stack/pids): cri-containerd, containerd, registry.
#
# Before that, unless DOWN_KEEP_PODS=1, it removes the pods still known to
# cri-containerd (crictl rmp -af) and then kills and deletes any task left in
# containerd's $CONTAINERD_NAMESPACE namespace, so no shim or container
# outlives the stack. Images, snapshots and configs stay (`make up` reuses them).
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../deploy/lib.sh"

if [[ "${DOWN_KEEP_PODS:-0}" != 1 ]]; then
	if is_running cri-containerd && [[ -S "$CRI_SOCKET" ]]; then
		log "removing pods through cri-containerd"
		timeout 120 crictl --runtime-endpoint "$CRI_ENDPOINT" --timeout 60s rmp -af >/dev/null 2>&1 ||
			log "WARNING: crictl rmp -af failed"
	fi
fi

stop_bg cri-containerd 30

if [[ "${DOWN_KEEP_PODS:-0}" != 1 ]] && is_running containerd; then
	tasks="$(ctr_ -n "$CONTAINERD_NAMESPACE" tasks ls -q 2>/dev/null || true)"
	if [[ -n "$tasks" ]]; then
		log "killing $(wc -w <<<"$tasks") leftover task(s) in namespace $CONTAINERD_NAMESPACE"
		for t in $tasks; do
			ctr_ -n "$CONTAINERD_NAMESPACE" tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true
		done
		for t in $tasks; do
			for _ in 1 2 3 4 5 6 7 8 9 10; do
				ctr_ -n "$CONTAINERD_NAMESPACE" tasks delete "$t" >/dev/null 2>&1 && break
				sleep 0.5
			done
		done
	fi
fi

stop_bg containerd 30
stop_bg registry 10
log "stack stopped"
