package spec

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	relativeRootfsPath = "rootfs"
	devShm             = "/dev/shm"
	etcHostname        = "/etc/hostname"
	etcHosts           = "/etc/hosts"
	etcResolvConf      = "/etc/resolv.conf"
	hostnameEnv        = "HOSTNAME"
	localhostPrefix    = "localhost/"

	netNSFormat = "/proc/%d/ns/net"
	ipcNSFormat = "/proc/%d/ns/ipc"
	utsNSFormat = "/proc/%d/ns/uts"
	pidNSFormat = "/proc/%d/ns/pid"
)

func invalidArgument(format string, a ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, a...), errdefs.ErrInvalidArgument)
}

func failedPrecondition(format string, a ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, a...), errdefs.ErrFailedPrecondition)
}

func notImplemented(format string, a ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, a...), errdefs.ErrNotImplemented)
}

// CgroupsPath is the cgroups path of a sandbox or container under the pod's
// cgroup parent: "<parent>/<id>" for cgroupfs, "<base(parent)>:cri-containerd:<id>"
// for systemd (chosen when systemd is set or the parent ends in ".slice", as
// containerd does). An empty parent gives "" (keep containerd's default) for
// cgroupfs and ":cri-containerd:<id>" (runc's default slice) for systemd.
func CgroupsPath(parent, id string, systemd bool) string {
	if parent == "" {
		if systemd {
			return ":" + CgroupSystemdPrefix + ":" + id
		}
		return ""
	}
	base := path.Base(parent)
	if systemd || strings.HasSuffix(base, ".slice") {
		return strings.Join([]string{base, CgroupSystemdPrefix, id}, ":")
	}
	return filepath.Join(parent, id)
}

// userString builds an OCI image-spec user string ("user[:group]") from CRI
// fields; username wins over uid. A group without a user is invalid.
func userString(username string, uid, gid *runtimeapi.Int64Value) (string, error) {
	var user, group string
	if uid != nil {
		if uid.GetValue() < 0 || uid.GetValue() > math.MaxInt32 {
			return "", invalidArgument("run_as_user %d is out of range", uid.GetValue())
		}
		user = strconv.FormatInt(uid.GetValue(), 10)
	}
	if username != "" {
		user = username
	}
	if gid != nil {
		if gid.GetValue() < 0 || gid.GetValue() > math.MaxInt32 {
			return "", invalidArgument("run_as_group %d is out of range", gid.GetValue())
		}
		group = strconv.FormatInt(gid.GetValue(), 10)
	}
	if user == "" {
		if group != "" {
			return "", invalidArgument("user group %q is specified without user", group)
		}
		return "", nil
	}
	if group != "" {
		user += ":" + group
	}
	return user, nil
}

// withUser is oci.WithUser whose "not found in the image" errors carry
// errdefs.ErrInvalidArgument.
func withUser(userstr string) oci.SpecOpts {
	return func(ctx context.Context, client oci.Client, c *containers.Container, s *runtimespec.Spec) error {
		if err := oci.WithUser(userstr)(ctx, client, c, s); err != nil {
			if errors.Is(err, oci.ErrNoUsersFound) || errors.Is(err, oci.ErrNoGroupsFound) {
				return fmt.Errorf("resolving user %q in the image: %w: %w", userstr, err, errdefs.ErrInvalidArgument)
			}
			return fmt.Errorf("resolving user %q in the image: %w", userstr, err)
		}
		return nil
	}
}

// withMergedAdditionalGIDs adds the groups that /etc/group of the image lists
// userstr in to the groups already in the spec.
func withMergedAdditionalGIDs(userstr string) oci.SpecOpts {
	return func(ctx context.Context, client oci.Client, c *containers.Container, s *runtimespec.Spec) error {
		if s.Process == nil {
			s.Process = &runtimespec.Process{}
		}
		prev := s.Process.User.AdditionalGids
		if err := oci.WithAdditionalGIDs(userstr)(ctx, client, c, s); err != nil {
			return fmt.Errorf("reading the image's groups of %q: %w", userstr, err)
		}
		s.Process.User.AdditionalGids = mergeGIDs(s.Process.User.AdditionalGids, prev)
		return nil
	}
}

// withSupplementalGroups merges groups into the spec's additional gids.
func withSupplementalGroups(groups []int64) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *runtimespec.Spec) error {
		if s.Process == nil {
			s.Process = &runtimespec.Process{}
		}
		gids := make([]uint32, 0, len(groups))
		for _, g := range groups {
			gids = append(gids, uint32(g))
		}
		s.Process.User.AdditionalGids = mergeGIDs(s.Process.User.AdditionalGids, gids)
		return nil
	}
}

// mergeGIDs returns the sorted union of both lists (nil when both are empty).
func mergeGIDs(a, b []uint32) []uint32 {
	if len(a) == 0 && len(b) == 0 {
		return nil
	}
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}

func validateGroups(groups []int64) error {
	for _, g := range groups {
		if g < 0 || g > math.MaxUint32 {
			return invalidArgument("supplemental group %d is out of range", g)
		}
	}
	return nil
}

// withoutDefaultSecuritySettings drops the default AppArmor profile, seccomp
// and rlimits of the generated default spec (containerd CRI does the same).
func withoutDefaultSecuritySettings(_ context.Context, _ oci.Client, _ *containers.Container, s *runtimespec.Spec) error {
	if s.Process == nil {
		s.Process = &runtimespec.Process{}
	}
	s.Process.ApparmorProfile = ""
	s.Process.Rlimits = nil
	if s.Linux != nil {
		s.Linux.Seccomp = nil
	}
	return nil
}

// withRoot sets the rootfs path: the bundle-relative "rootfs" unless an
// absolute override is given.
func withRoot(abs string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *runtimespec.Spec) error {
		if s.Root == nil {
			s.Root = &runtimespec.Root{}
		}
		s.Root.Path = relativeRootfsPath
		if abs != "" {
			s.Root.Path = abs
		}
		return nil
	}
}

func withSysctls(sysctls map[string]string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *runtimespec.Spec) error {
		if len(sysctls) == 0 {
			return nil
		}
		if s.Linux == nil {
			s.Linux = &runtimespec.Linux{}
		}
		if s.Linux.Sysctl == nil {
			s.Linux.Sysctl = map[string]string{}
		}
		maps.Copy(s.Linux.Sysctl, sysctls)
		return nil
	}
}

func withOOMScoreAdj(adj int) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *runtimespec.Spec) error {
		if s.Process == nil {
			s.Process = &runtimespec.Process{}
		}
		s.Process.OOMScoreAdj = &adj
		return nil
	}
}

func withCPUSharesOnly(shares uint64) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *runtimespec.Spec) error {
		ensureResources(s)
		if s.Linux.Resources.CPU == nil {
			s.Linux.Resources.CPU = &runtimespec.LinuxCPU{}
		}
		s.Linux.Resources.CPU.Shares = &shares
		return nil
	}
}

func ensureResources(s *runtimespec.Spec) {
	if s.Linux == nil {
		s.Linux = &runtimespec.Linux{}
	}
	if s.Linux.Resources == nil {
		s.Linux.Resources = &runtimespec.LinuxResources{}
	}
}

// withoutAmbientCaps clears ambient capabilities (containerd keeps docker's
// behaviour: non-root plus capabilities is not defined by Kubernetes).
func withoutAmbientCaps(_ context.Context, _ oci.Client, _ *containers.Container, s *runtimespec.Spec) error {
	if s.Process == nil {
		s.Process = &runtimespec.Process{}
	}
	if s.Process.Capabilities == nil {
		s.Process.Capabilities = &runtimespec.LinuxCapabilities{}
	}
	s.Process.Capabilities.Ambient = nil
	return nil
}

// passthroughAnnotations copies the annotations whose keys match one of the
// path.Match patterns.
func passthroughAnnotations(dst, src map[string]string, patterns []string) {
	for k, v := range src {
		for _, p := range patterns {
			if ok, _ := path.Match(p, k); ok {
				dst[k] = v
				break
			}
		}
	}
}

// parseLegacyProfile turns a deprecated profile string (seccomp_profile_path,
// apparmor_profile) into a SecurityProfile; "" means not set (nil).
func parseLegacyProfile(p string) (*runtimeapi.SecurityProfile, error) {
	switch p {
	case "":
		return nil, nil
	case "runtime/default", "docker/default":
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}, nil
	case "unconfined":
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}, nil
	}
	if !strings.HasPrefix(p, localhostPrefix) {
		return nil, invalidArgument("invalid security profile %q", p)
	}
	return &runtimeapi.SecurityProfile{
		ProfileType:  runtimeapi.SecurityProfile_Localhost,
		LocalhostRef: strings.TrimPrefix(p, localhostPrefix),
	}, nil
}
