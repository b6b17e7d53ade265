// Package version carries the build's version, set with -ldflags.
package version

var (
	// Version is the cri-containerd release, overridden at build time.
	Version = "v0.1.0-dev"
	// Revision is the VCS revision, overridden at build time.
	Revision = ""
)

const (
	// RuntimeName is what Version reports as the runtime name.
	RuntimeName = "cri-containerd"
	// CRIVersion is the CRI API version served.
	CRIVersion = "v1"
)
