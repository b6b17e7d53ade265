#!/usr/bin/env bash
# Builds the container images the k8s v1.37.2 node e2e [NodeConformance]
# specs use, from Debian .debs and Go/C sources of the k8s tree only, pushes
# them to a plain-HTTP registry and saves them as OCI layouts. Run by
# hack/node-e2e-install.sh (which rebuilds when this file changes).
#
#   REG    registry to push to (crane registry serve)
#   K8S    writable k8s.io/kubernetes@v1.37.2 tree with rewritten go.mod
#   W      scratch dir
#   CRANE  crane binary
#   OCI    where the OCI layouts and refs.txt ("dir ref digest") go
#
# Images (test/nodee2e/repo-list.yaml maps the suite's names to $REG):
# Every busybox-based image: sh is Debian's bash-static, nmeter is
# test/nodee2e/images/nmeter.c; agnhost also has curl (host binary + libs).
#   $REG/e2e-test-images/busybox:1.37.0-2      (Debian busybox-static)
#   $REG/e2e-test-images/agnhost:2.66.1        (Go source test/images/agnhost)
#   $REG/e2e-test-images/nginx:1.27.0-2        (Debian nginx + host libs)
#   $REG/e2e-test-images/nonroot:1.5           (busybox, USER 1234)
#   $REG/e2e-test-images/nonewprivs:1.4        (Go source nnp.go, setuid)
#   $REG/e2e-test-images/glibc-dns-testing:2.1.1 (busybox sh + glibc hostname)
#   $REG/pause:3.10.2 (+ 3.10, 3.10.1)         (build/pause/linux/pause.c, index)
set -euo pipefail
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../test/nodee2e/images" && pwd)
REG=${REG:?}
K8S=${K8S:?}
W=${W:?}
CRANE=${CRANE:?}
E2E=$REG/e2e-test-images
mkdir -p "$W/debs" "$W/out"
cd "$W"

# ---- inputs from Debian apt (downloaded, not installed) ----
for p in busybox-static nginx hostname bash-static; do
  ( cd debs && [ -n "$(ls "${p}"_*.deb 2>/dev/null)" ] || apt-get download "$p" )
done
rm -rf x && mkdir x
for d in debs/*.deb; do dpkg-deb -x "$d" x; done
# nmeter: the applet Debian's busybox lacks (test/nodee2e/images/nmeter.c)
gcc -Os -Wall -static -o x/nmeter "$SRC/nmeter.c"

# copy_bin ROOT FILE: FILE and the shared libraries it loads, at the same paths.
copy_bin() {
  local l
  mkdir -p "$1$(dirname "$2")"; cp -L "$2" "$1$2"
  for l in $(ldd "$2" | awk '/=>/{print $3} /ld-linux/{print $1}'); do
    mkdir -p "$1$(dirname "$l")"; cp -L "$l" "$1$l"
  done
}

layer() { tar --numeric-owner --owner=0 --group=0 -C "$1" -cf "$2" . ; }
# push NAME:TAG from rootfs dir, then set config (extra crane mutate args)
push() {
  local ref=$1 dir=$2; shift 2
  local t="$W/out/$(echo "$ref" | tr '/:' '__').tar"
  layer "$dir" "$t"
  $CRANE append --insecure -f "$t" -t "$ref" >/dev/null 2>&1
  $CRANE mutate --insecure "$ref" --set-platform linux/amd64 -t "$ref" "$@" >/dev/null 2>&1
  echo "pushed $ref $($CRANE digest --insecure "$ref")"
}

bbroot() { # $1 = dir: busybox with applet symlinks in /bin, passwd/group, /tmp
  rm -rf "$1"; mkdir -p "$1"/{bin,etc,tmp,root,var,usr/bin,usr/sbin,sbin,proc,sys,dev}
  chmod 1777 "$1/tmp"
  cp x/bin/busybox "$1/bin/busybox"
  for a in $("$1/bin/busybox" --list); do [ "$a" = busybox ] || ln -sf busybox "$1/bin/$a"; done
  # sh is bash: busybox ash drops environment variables whose names are not
  # shell identifiers (data-1=value-1, ConfigMap/Secret envFrom specs); ash stays.
  cp x/bin/bash-static "$1/bin/bash"; ln -sf bash "$1/bin/sh"
  cp x/nmeter "$1/bin/nmeter"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > "$1/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' > "$1/etc/group"
}

# ---- pause (C, static) ----
rm -rf r && mkdir r
gcc -Os -Wall -static -DVERSION=v3.10.2 -o r/pause "$K8S/build/pause/linux/pause.c"
push "$REG/pause:3.10.2-single" r --entrypoint=/pause -u 65535:65535
for t in 3.10.2 3.10.1 3.10; do
  $CRANE index append --insecure -m "$REG/pause:3.10.2-single" -t "$REG/pause:$t" >/dev/null 2>&1
done
echo "pushed $REG/pause:3.10.2 (index) $($CRANE digest --insecure $REG/pause:3.10.2)"

# ---- busybox ----
bbroot r
push "$E2E/busybox:1.37.0-2" r --cmd=sh

# ---- nonroot ----
bbroot r
push "$E2E/nonroot:1.5" r -u 1234

# ---- nonewprivs (Go) ----
bbroot r; mkdir -p r/usr/local/bin
( cd "$K8S" && CGO_ENABLED=0 go build -mod=mod -p 1 -o "$W/r/usr/local/bin/nnp" ./test/images/nonewprivs )
chmod 4755 r/usr/local/bin/nnp
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > r/etc/passwd
push "$E2E/nonewprivs:1.4" r --cmd=nnp

# ---- glibc-dns-testing: glibc 'hostname' + busybox sh ----
bbroot r; rm -f r/bin/hostname r/bin/dnsdomainname; mkdir -p r/lib/x86_64-linux-gnu r/lib64
cp x/bin/hostname r/bin/hostname
cp -L /lib/x86_64-linux-gnu/libc.so.6 r/lib/x86_64-linux-gnu/
cp -L /lib64/ld-linux-x86-64.so.2 r/lib64/
printf 'passwd: files\ngroup: files\nhosts: files dns\n' > r/etc/nsswitch.conf
push "$E2E/glibc-dns-testing:2.1.1" r

# ---- nginx: Debian binary + its shared libs ----
bbroot r
mkdir -p r/usr/sbin r/etc/nginx r/var/log/nginx r/var/cache/nginx r/var/lib/nginx r/run r/usr/share/nginx/html
cp x/usr/sbin/nginx r/usr/sbin/nginx
for l in $(ldd x/usr/sbin/nginx | awk '/=>/{print $3} /ld-linux/{print $1}'); do
  mkdir -p "r$(dirname "$l")"; cp -L "$l" "r$l"
done
cat > r/etc/nginx/nginx.conf <<'EOF'
user root;
daemon off;
worker_processes 1;
error_log /dev/stderr notice;
pid /run/nginx.pid;
events { worker_connections 256; }
http {
  access_log /dev/stdout;
  server { listen 80; root /usr/share/nginx/html; index index.html; }
}
EOF
echo '<html><body>Welcome to nginx!</body></html>' > r/usr/share/nginx/html/index.html
push "$E2E/nginx:1.27.0-2" r --cmd=nginx

# ---- agnhost (Go) ----
bbroot r; mkdir -p r/uploads r/var/registry
( cd "$K8S" && CGO_ENABLED=0 go build -mod=mod -p 1 -o "$W/r/agnhost" ./test/images/agnhost )
ln -s agnhost r/agnhost-2
# curl (the upstream image is Alpine with curl): the networking and HTTP
# lifecycle hook specs exec it in agnhost containers.
copy_bin r /usr/bin/curl
cp "$K8S/test/images/agnhost/porter/localhost.crt" "$K8S/test/images/agnhost/porter/localhost.key" r/
printf 'root:x:0:0:root:/root:/bin/sh\nuser-defined-in-image:x:1000:1000::/home/user-defined-in-image:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' > r/etc/passwd
printf 'root:x:0:\nuser-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\nnogroup:x:65534:\n' > r/etc/group
# fake-registry-server content: pause:testing, same layout as fakeregistryserver/prepare_registry.sh
p2() { local h=${2#*:}; echo "$1/${2%%:*}/${h:0:2}/$h/data"; }
D=r/var/registry/pause; mkdir -p "$D/manifests" "$D/blobs"
$CRANE manifest --insecure "$REG/pause:3.10.2" > "$D/m.json"
md="sha256:$(sha256sum < "$D/m.json" | awk '{print $1}')"
f=$(p2 "$D/manifests" "$md"); mkdir -p "$(dirname "$f")"; mv "$D/m.json" "$f"; echo "$md" > "$D/manifests/testing"
for cd in $(jq -r '.manifests[].digest' "$f"); do
  g=$(p2 "$D/manifests" "$cd"); mkdir -p "$(dirname "$g")"; $CRANE manifest --insecure "$REG/pause@$cd" > "$g"
  for b in $(jq -r '.config.digest, .layers[].digest' "$g"); do
    h=$(p2 "$D/blobs" "$b"); mkdir -p "$(dirname "$h")"; $CRANE blob --insecure "$REG/pause@$b" > "$h"
  done
done
push "$E2E/agnhost:2.66.1" r --entrypoint=/agnhost --cmd=pause

# ---- save OCI layouts: `crane registry serve --disk` keeps only blobs on disk,
#      manifests live in memory, so a restarted registry is empty -> load-images.sh
OCI=${OCI:?}
rm -rf "$OCI"; mkdir -p "$OCI"; : > "$OCI/refs.txt"
for r in pause:3.10.2 pause:3.10.1 pause:3.10 e2e-test-images/busybox:1.37.0-2 e2e-test-images/nonroot:1.5 \
         e2e-test-images/nonewprivs:1.4 e2e-test-images/glibc-dns-testing:2.1.1 \
         e2e-test-images/nginx:1.27.0-2 e2e-test-images/agnhost:2.66.1; do
  d=$(echo "$r" | tr '/:' '__')
  $CRANE pull --insecure --format=oci "$REG/$r" "$OCI/$d" >/dev/null 2>&1
  echo "$d $r $($CRANE digest --insecure "$REG/$r")" >> "$OCI/refs.txt"
done
cat "$OCI/refs.txt"
echo DONE
