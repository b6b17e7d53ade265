#!/usr/bin/env bash
# Shows the running stack at work through crictl (hack/up.sh runs it last):
# pulls the default test image through the registry mirror, lists images,
# prints the runtime info, then runs a pod sandbox with a busybox container,
# execs in it, shows its log and removes both.
#   DEMO_POD=auto (default): skip the pod part, with a note, if the daemon
#                            answers RunPodSandbox with Unimplemented
#   DEMO_POD=1 / 0:          always / never run the pod part
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../deploy/lib.sh"

DEMO_IMAGE="${DEMO_IMAGE:-registry.k8s.io/e2e-test-images/busybox:1.29-2}"

run() {
	printf '\n$ %s\n' "$*" >&2
	"$@"
}

log "crictl_ = crictl --runtime-endpoint $CRI_ENDPOINT --image-endpoint $CRI_ENDPOINT"
run crictl_ pull "$DEMO_IMAGE"
run crictl_ images
run crictl_ info

DEMO_POD="${DEMO_POD:-auto}"
if [[ "$DEMO_POD" != 0 ]]; then
	tmp="$(mktemp -d)"
	trap 'rm -rf "$tmp"' EXIT
	DEMO_HOST_PORT="${DEMO_HOST_PORT:-18080}"
	DEMO_LOG_DIR="${DEMO_LOG_DIR:-/var/log/pods/default_demo}"
	mkdir -p "$DEMO_LOG_DIR"
	# A demo pod from an earlier run holds the name and the host port: remove it.
	for old in $(crictl_ pods --name '^demo$' -q 2>/dev/null); do
		crictl_ rmp -f "$old" >/dev/null 2>&1 || true
	done
	# Its log file too (kubelet would remove a deleted pod's log directory).
	rm -f "$DEMO_LOG_DIR/busybox.log"
	cat >"$tmp/pod.json" <<JSON
{
  "metadata": { "name": "demo", "namespace": "default", "uid": "demo-uid-$$", "attempt": 0 },
  "hostname": "demo",
  "labels": { "io.kubernetes.pod.name": "demo", "io.kubernetes.pod.namespace": "default" },
  "log_directory": "$DEMO_LOG_DIR",
  "port_mappings": [ { "protocol": 0, "container_port": 80, "host_port": $DEMO_HOST_PORT } ],
  "linux": {}
}
JSON
	cat >"$tmp/ctr.json" <<JSON
{
  "metadata": { "name": "busybox" },
  "labels": { "io.kubernetes.pod.name": "demo", "io.kubernetes.pod.namespace": "default", "io.kubernetes.container.name": "busybox" },
  "image": { "image": "$DEMO_IMAGE" },
  "command": ["sh", "-c", "echo hello from cri-containerd > /tmp/index.html; echo hello from cri-containerd; exec httpd -f -v -p 80 -h /tmp"],
  "log_path": "busybox.log",
  "linux": {}
}
JSON
	printf '\n$ crictl_ runp %s\n' "$tmp/pod.json" >&2
	if ! pod="$(crictl_ runp "$tmp/pod.json" 2>"$tmp/runp.err")"; then
		cat "$tmp/runp.err" >&2
		if [[ "$DEMO_POD" == auto ]] && grep -q 'Unimplemented' "$tmp/runp.err"; then
			log "RunPodSandbox is not implemented yet: skipping the pod demo"
			exit 0
		fi
		die "RunPodSandbox failed"
	fi
	echo "$pod"
	ctr="$(run crictl_ create "$pod" "$tmp/ctr.json" "$tmp/pod.json")"
	run crictl_ start "$ctr"
	run crictl_ pods
	run crictl_ ps
	run crictl_ exec "$ctr" sh -c 'hostname; ip -4 addr show eth0 | grep inet; ls /bin | head -3'
	run crictl_ inspectp --output go-template --template '{{.status.network.ip}}' "$pod"
	sleep 1
	run curl -sS --max-time 5 "http://127.0.0.1:${DEMO_HOST_PORT}/index.html"
	run crictl_ logs "$ctr"
	log "the demo pod keeps running (host port ${DEMO_HOST_PORT}); 'make down' removes it"
fi
