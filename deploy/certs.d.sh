#!/usr/bin/env bash
# Writes the containerd hosts.toml tree that maps registry.k8s.io, k8s.gcr.io,
# gcr.io, public.ecr.aws, docker.io (and registry-1.docker.io,
# index.docker.io), quay.io, `_default` and the local registry itself to the
# local test registry over plain http.
#
#   deploy/certs.d.sh [DIR]      (default $CERTS_D = /etc/cri-containerd/certs.d)
#   REGISTRY_PORT=5001 deploy/certs.d.sh
#
# Pass DIR to cri-containerd as --registry-config-path, or to ctr as
# `ctr images pull --hosts-dir DIR`.
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
write_certs_d "${1:-$CERTS_D}"
