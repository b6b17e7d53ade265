#!/usr/bin/env bash
# Shows which parts of the runtime stack run, and the environment contract.
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../deploy/lib.sh"
for p in containerd registry cri-containerd; do
	pid="$(pid_of "$p")"
	if [[ -n "$pid" ]]; then
		printf '%-15s running, pid %s\n' "$p" "$pid"
	else
		printf '%-15s stopped\n' "$p"
	fi
done
echo
stack_env
