// Package deps pins the module versions the project builds on while packages
// that use them are being written. Remove an import once real code uses it.
package deps

import (
	_ "github.com/containerd/cgroups/v3/cgroup1/stats"
	_ "github.com/containerd/cgroups/v3/cgroup2/stats"
	_ "github.com/containerd/containerd/api/events"
	_ "github.com/containerd/containerd/v2/contrib/seccomp"
	_ "github.com/containerd/containerd/v2/core/remotes/docker/config"
	_ "github.com/containerd/containerd/v2/pkg/netns"
	_ "github.com/containerd/containerd/v2/pkg/oci"
	_ "github.com/containerd/typeurl/v2"
	_ "github.com/google/go-containerregistry/pkg/v1/remote"
	_ "github.com/moby/sys/mountinfo"
	_ "github.com/opencontainers/runtime-spec/specs-go"
	_ "k8s.io/cri-client/pkg"
	_ "k8s.io/cri-streaming/pkg/streaming"
	_ "k8s.io/streaming/pkg/runtime"
	_ "k8s.io/utils/exec"
)
