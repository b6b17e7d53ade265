package server

import (
	"os"
	"strconv"
	"strings"
)

// capSysResource is CAP_SYS_RESOURCE's bit number.
const capSysResource = 24

// restrictOOMScoreAdj decides whether container oom_score_adj values must be
// clamped to the daemon's own: "true"/"false" force it; "auto" clamps when
// the daemon lacks CAP_SYS_RESOURCE, without which the kernel refuses to lower
// a score (and runc then fails every container that asks for less).
func restrictOOMScoreAdj(setting string) bool {
	switch setting {
	case "true":
		return true
	case "false":
		return false
	}
	return !hasCapability(capSysResource)
}

func hasCapability(bit uint) bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				return false
			}
			return caps&(1<<bit) != 0
		}
	}
	return false
}
