#!/usr/bin/env bash
# Smoke-tests the test images and the registry mirror through containerd
# alone (ctr, no CRI): pulls through the hosts.toml tree, then runs busybox
# (hard-linked applets, ipcs, pgrep), pause (user 65535, exits 0 on SIGTERM),
# nonewprivs, the predefined-group image, nginx and httpd (host network, so
# host ports 12003 and 80 must be free). Uses its own containerd namespace
# ($VERIFY_NAMESPACE, default cri-containerd-verify) and removes it afterwards.
# Needs containerd and the registry running (hack/up.sh --no-daemon).
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../deploy/lib.sh"

NS="${VERIFY_NAMESPACE:-cri-containerd-verify}"
RUNC_ROOT="${STACK_STATE}/runc"
FIFO_DIR="${STACK_STATE}/fifo"
c() { ctr --address "$CONTAINERD_ADDRESS" -n "$NS" "$@" 2> >(grep -v 'level=warning' >&2); }
fails=0
check() { # check DESCRIPTION EXPECTED_REGEXP ACTUAL
	if grep -qE -- "$2" <<<"$3"; then
		log "ok: $1"
	else
		log "FAIL: $1: expected /$2/, got: $3"
		fails=$((fails + 1))
	fi
}
run() { c run --rm --runc-root "$RUNC_ROOT" --fifo-dir "$FIFO_DIR" "$@" 2>&1; }
stop_task() {
	c tasks kill -s SIGTERM "$1" >/dev/null 2>&1 || true
	local i
	for i in $(seq 50); do
		c tasks ls 2>/dev/null | awk -v t="$1" '$1==t{print $3}' | grep -q RUNNING || break
		sleep 0.1
	done
	c tasks delete "$1" 2>/dev/null | grep -v '^$' || true
	c containers rm "$1" >/dev/null 2>&1 || true
}
cleanup() {
	local t
	for t in $(c tasks ls -q 2>/dev/null); do c tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true; c tasks delete "$t" >/dev/null 2>&1 || true; done
	for t in $(c containers ls -q 2>/dev/null); do c containers rm "$t" >/dev/null 2>&1 || true; done
	local imgs
	mapfile -t imgs < <(c images ls -q 2>/dev/null)
	((${#imgs[@]} == 0)) || c images rm --sync "${imgs[@]}" >/dev/null 2>&1 || true
	[[ -z "${shmid:-}" ]] || ipcrm -m "$shmid" 2>/dev/null || true
	c namespaces rm "$NS" >/dev/null 2>&1 || true
}
trap cleanup EXIT

BUSYBOX=registry.k8s.io/e2e-test-images/busybox:1.29-2
PAUSE=registry.k8s.io/pause:3.10.2
NNP=registry.k8s.io/e2e-test-images/nonewprivs:1.3
PG=gcr.io/k8s-staging-cri-tools/test-image-predefined-group:latest
NGINX=gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64:latest
HTTPD=registry.k8s.io/e2e-test-images/httpd:2.4.39-4

for img in "$BUSYBOX" "$PAUSE" "$NNP" "$PG" "$NGINX" "$HTTPD" docker.io/library/busybox:latest k8s.gcr.io/pause:3.9; do
	c images pull --hosts-dir "$CERTS_D" "$img" >/dev/null
	log "pulled $img through $CERTS_D"
done

out="$(run "$BUSYBOX" v-bb sh -c 'ls /bin | wc -l; stat -c %h /bin/ls; sleep 5 & pgrep sleep; pgrep -x nosuch; echo pgrep-none=$?')"
check "busybox: applets present" '^2[0-9][0-9]$' "$(sed -n 1p <<<"$out")"
check "busybox: /bin/ls is a hard link" '^[0-9]{3}$' "$(sed -n 2p <<<"$out")"
check "busybox: pgrep finds sleep" '^[0-9]+$' "$(sed -n 3p <<<"$out")"
check "busybox: pgrep exits 1 on no match" 'pgrep-none=1' "$out"

shmid="$(ipcmk -M 4096 | awk '{print $NF}')"
out="$(run --with-ns "ipc:/proc/$$/ns/ipc" "$BUSYBOX" v-ipc ipcs -m || true)"
ipcrm -m "$shmid" || true
shmid=
check "busybox: ipcs -m lists a host segment in the host IPC namespace" "[[:space:]]${shmid}[[:space:]]" "$out"

check "nonewprivs: setuid works without no_new_privs" '^Effective uid: 0$' "$(run -u 1000 --allow-new-privs "$NNP" v-nnp1)"
check "nonewprivs: no_new_privs blocks setuid" '^Effective uid: 1000$' "$(run -u 1000 "$NNP" v-nnp2)"
check "predefined-group: id -G" '^1000 50000$' "$(run "$PG" v-pg id -G)"

c run --rm --runc-root "$RUNC_ROOT" --fifo-dir "$FIFO_DIR" "$PAUSE" v-pause >/dev/null &
bg=$!
pid=
for _ in $(seq 50); do
	pid="$(c tasks ls 2>/dev/null | awk '$1=="v-pause" && $3=="RUNNING"{print $2}')"
	[[ -n "$pid" ]] && break
	sleep 0.1
done
check "pause: runs as 65535:65535" 'Uid:[[:space:]]+65535' "$(grep Uid "/proc/$pid/status")"
c tasks kill -s SIGTERM v-pause
st=0
wait "$bg" || st=$?
check "pause: exits 0 on SIGTERM" '^0$' "$st"

c run -d --runc-root "$RUNC_ROOT" --fifo-dir "$FIFO_DIR" --net-host "$NGINX" v-nginx >/dev/null
for _ in $(seq 50); do curl -fsS -o /dev/null http://127.0.0.1:12003/ 2>/dev/null && break; sleep 0.1; done
check "hostnet-nginx: serves :12003" 'Welcome to nginx' "$(curl -fsS http://127.0.0.1:12003/ || true)"
out="$(c tasks exec --fifo-dir "$FIFO_DIR" --exec-id v1 v-nginx sh -c 'tr "\0" " " </proc/1/cmdline; echo; cat /var/run/nginx.pid; pidof nginx')"
check "nginx: /proc/1/cmdline has master process" 'master process' "$out"
check "nginx: pid file and pidof agree" '^1$' "$(sed -n 2p <<<"$out")"
stop_task v-nginx

c run -d --runc-root "$RUNC_ROOT" --fifo-dir "$FIFO_DIR" --net-host "$HTTPD" v-httpd >/dev/null
for _ in $(seq 50); do curl -fsS -o /dev/null http://127.0.0.1:80/ 2>/dev/null && break; sleep 0.1; done
check "httpd: It works! on :80" 'It works!' "$(curl -fsS http://127.0.0.1:80/ || true)"
stop_task v-httpd

if ((fails)); then
	die "$fails image check(s) failed"
fi
log "all image checks passed"
