#!/usr/bin/env bash
# The local test registry (crane registry serve on 127.0.0.1:$REGISTRY_PORT,
# in memory) and its images.
#
#   deploy/registry.sh [up]   start the registry if needed, build + push the images
#   deploy/registry.sh stop   stop the registry (its content is lost)
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
case "${1:-up}" in
up)
	mkdir -p "$STACK_LOG_DIR" "$OUTPUT_DIR"
	start_registry
	push_images
	;;
stop) stop_bg registry ;;
*) die "usage: $0 [up|stop]" ;;
esac
