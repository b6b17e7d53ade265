// Package version carries the build's version.
package version

import "runtime/debug"

var (
	// Version is the cri-containerd release; override with
	// -ldflags "-X github.com/cri-containerd/cri-containerd/version.Version=...".
	Version = "v0.1.0-dev"
	// Revision is the VCS revision, set with -ldflags "-X ...version.Revision=..."
	// (deploy/lib.sh and the Makefile do); see Rev.
	Revision = ""
)

const (
	// RuntimeName is what Version reports as the runtime name.
	RuntimeName = "cri-containerd"
	// CRIVersion is the CRI API version served.
	CRIVersion = "v1"
)

// Rev returns Revision, or else the revision the Go toolchain stamped into
// the binary (builds with -buildvcs), or "".
func Rev() string {
	if Revision != "" {
		return Revision
	}
	return vcsRevision()
}

func vcsRevision() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, dirty string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		return ""
	}
	return rev + dirty
}
