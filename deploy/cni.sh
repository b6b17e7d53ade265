#!/usr/bin/env bash
# Writes the CNI network config of the runtime stack:
# $CNI_CONF_DIR/10-cri-containerd.conflist (default /etc/cri-containerd/net.d):
# bridge cricbr0 (gateway, masquerade, hairpin) with host-local IPAM on
# $CNI_SUBNET (default 10.231.0.0/16, data in $CNI_IPAM_DIR), portmap and
# bandwidth. Refuses a subnet that overlaps a route of another interface and
# deletes a cricbr0 left over with a different address.
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
write_cni_conf
