#!/usr/bin/env bash
# Brings up the local runtime stack and shows it working (`make up`):
#   1. deploy/install.sh (containerd v2.4.2, runc v1.5.3 in /opt/cri-containerd/bin
#      and Debian's runc, CNI plugins, crictl, critest, crane; idempotent)
#   2. hosts.toml tree ($CERTS_D), CNI config ($CNI_CONF_DIR), /etc/crictl.yaml
#   3. containerd with deploy/containerd-config.toml
#   4. local registry 127.0.0.1:$REGISTRY_PORT + the test images
#   5. builds _output/cri-containerd and starts it on $CRI_SOCKET, its runc
#      handler on $RUNC_BINARY (runc v1.5.3; RUNC_BINARY=/usr/sbin/runc for
#      Debian's 1.1.5, which has no user namespaces)
#   6. runs hack/demo.sh (crictl pull/images/info, a pod with a container)
# Idempotent: running pieces are kept (PID files in /run/cri-containerd-stack/pids),
# a rebuilt daemon binary is restarted. `hack/up.sh --no-demo` skips step 6's demo;
# `hack/up.sh --no-daemon` stops after step 4. Stop everything with hack/down.sh.
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../deploy/lib.sh"

demo=1
daemon=1
for a in "$@"; do
	case "$a" in
	--no-demo) demo=0 ;;
	--no-daemon) daemon=0 demo=0 ;;
	*) die "usage: $0 [--no-demo] [--no-daemon]" ;;
	esac
done
[[ "${UP_DEMO:-1}" == 0 ]] && demo=0

if ((daemon)); then
	stack_up
else
	stack_up --no-daemon
fi

log "stack is up:"
for p in containerd registry cri-containerd; do
	pid="$(pid_of "$p")"
	[[ -n "$pid" ]] && log "  $p pid $pid ($(pid_file "$p"))"
done
log "  logs in $STACK_LOG_DIR"

if ((demo)); then
	"${REPO_ROOT}/hack/demo.sh"
fi
