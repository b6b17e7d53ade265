#!/usr/bin/env bash
# Runs critest (cri-tools v1.37.0 validation suite) against cri-containerd.
#
#   CRITEST_FOCUS   ginkgo focus regexp (default "": the whole validation suite)
#   CRITEST_MIN_PASSED  fail when fewer specs pass in a whole-suite run
#                   (default: every spec that can run here: 108, plus the 13
#                   NRI specs with an NRI socket, plus the 6 user-namespace
#                   specs when the runtime reports user_namespaces; 127 on the
#                   stack. The rest of the 142 are 9 AppArmor specs, which
#                   this host cannot run, 5 benchmarks and the digest pull)
#   CRITEST_SKIP    ginkgo skip regexp (default none)
#   CRITEST_ARGS    extra critest arguments
#   CRITEST_NRI_SOCKET  the daemon's NRI socket, passed as -nri-socket so that
#                   the NRI specs run (default: the stack's $NRI_SOCKET when
#                   CRI_ENDPOINT is the stack's socket; "" skips them)
#   CRITEST_ALLOWED_FAILURES  regexp of spec names that may fail (default: the
#                   digest-pinned pull, which no local registry can serve)
#
# Writes _output/critest-junit.xml and _output/critest.log, removes the SysV
# shared memory segments the run left behind (HostIpc specs create them with
# ipcmk), prints the summary and fails on any failure not allowed above.
set -euo pipefail
# shellcheck source=deploy/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../deploy/lib.sh"

CRITEST_FOCUS="${CRITEST_FOCUS-}"
CRITEST_SKIP="${CRITEST_SKIP:-}"
CRITEST_ARGS="${CRITEST_ARGS:-}"
if [[ -z "${CRITEST_NRI_SOCKET+x}" ]]; then
	CRITEST_NRI_SOCKET=""
	[[ "$CRI_ENDPOINT" == "unix://${CRI_SOCKET}" ]] && CRITEST_NRI_SOCKET="$NRI_SOCKET"
fi
CRITEST_ALLOWED_FAILURES="${CRITEST_ALLOWED_FAILURES:-public image with digest should be pulled and removed}"
JUNIT="${OUTPUT_DIR}/critest-junit.xml"
LOG="${OUTPUT_DIR}/critest.log"

command -v critest >/dev/null || die "critest not installed (run deploy/install.sh)"
command -v ipcs >/dev/null || die "ipcs (util-linux) missing"
mkdir -p "$OUTPUT_DIR"
rm -f "$JUNIT"

shm_ids() { ipcs -m | awk '$2 ~ /^[0-9]+$/ {print $2}' | sort -u; }
shm_before="$(shm_ids)"

args=(--runtime-endpoint "$CRI_ENDPOINT" --image-endpoint "$CRI_ENDPOINT"
	--ginkgo.junit-report "$JUNIT" --ginkgo.no-color)
[[ -n "$CRITEST_FOCUS" ]] && args+=(--ginkgo.focus "$CRITEST_FOCUS")
[[ -n "$CRITEST_SKIP" ]] && args+=(--ginkgo.skip "$CRITEST_SKIP")
if [[ -n "$CRITEST_NRI_SOCKET" ]]; then
	[[ -S "$CRITEST_NRI_SOCKET" ]] || die "NRI socket $CRITEST_NRI_SOCKET missing: is the daemon running with --nri-socket $CRITEST_NRI_SOCKET (and without --disable-nri)?"
	args+=(--nri-socket "$CRITEST_NRI_SOCKET")
fi
if [[ -n "$CRITEST_ARGS" ]]; then
	# shellcheck disable=SC2206 # word splitting intended
	args+=($CRITEST_ARGS)
fi

log "critest ${args[*]}"
set +e
(cd "$OUTPUT_DIR" && critest "${args[@]}") 2>&1 | tee "$LOG"
rc=${PIPESTATUS[0]}
set -e

# Remove the shared memory segments created during the run.
leaked=()
while read -r id; do
	[[ -n "$id" ]] && leaked+=("$id")
done < <(comm -13 <(echo "$shm_before") <(shm_ids))
if ((${#leaked[@]})); then
	log "removing ${#leaked[@]} SysV shm segment(s) left by the run: ${leaked[*]}"
	for id in "${leaked[@]}"; do ipcrm -m "$id" 2>/dev/null || true; done
fi

echo
grep -E '^Ran [0-9]+ of [0-9]+ Specs' "$LOG" | tail -1 || true
grep -E '^(SUCCESS|FAIL)! -- ' "$LOG" | tail -1 || true

[[ -s "$JUNIT" ]] || die "critest wrote no junit report (exit $rc); see $LOG"

# Failed specs from the junit report: <testcase name="..." ... status="failed|panicked|...">.
failed=()
while IFS= read -r name; do
	[[ -n "$name" ]] && failed+=("$name")
done < <(grep -o '<testcase [^>]*>' "$JUNIT" |
	grep -E 'status="(failed|panicked|interrupted|aborted|timedout)"' |
	sed -e 's/^<testcase name="\([^"]*\)".*/\1/' -e 's/&#34;/"/g; s/&#39;/'"'"'/g; s/&lt;/</g; s/&gt;/>/g; s/&amp;/\&/g')

unexpected=0
for name in "${failed[@]}"; do
	if [[ -n "$CRITEST_ALLOWED_FAILURES" ]] && grep -qE -- "$CRITEST_ALLOWED_FAILURES" <<<"$name"; then
		log "allowed failure: $name"
	else
		log "FAILED: $name"
		unexpected=$((unexpected + 1))
	fi
done

if ((unexpected)); then
	die "critest: $unexpected unexpected failure(s); junit $JUNIT, log $LOG"
fi
if ((rc != 0 && ${#failed[@]} == 0)); then
	die "critest exited $rc without failed specs in the junit report; see $LOG"
fi
passed="$(grep -oE '^(SUCCESS|FAIL)! -- [0-9]+ Passed' "$LOG" | tail -1 | grep -oE '[0-9]+' || echo 0)"
if [[ -z "${CRITEST_MIN_PASSED:-}" ]]; then
	CRITEST_MIN_PASSED=108
	[[ -n "$CRITEST_NRI_SOCKET" ]] && CRITEST_MIN_PASSED=$((CRITEST_MIN_PASSED + 13))
	if crictl --runtime-endpoint "$CRI_ENDPOINT" --timeout 10s info -o json 2>/dev/null |
		grep -qE '"user_namespaces": *true'; then
		CRITEST_MIN_PASSED=$((CRITEST_MIN_PASSED + 6))
	fi
fi
min="$CRITEST_MIN_PASSED"
if [[ -z "$CRITEST_FOCUS" ]] && ((passed < min)); then
	die "critest: only $passed specs passed, expected at least $min"
fi
log "critest OK: $passed passed, ${#failed[@]} allowed failure(s); junit $JUNIT"
