package spec

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	"github.com/containerd/errdefs"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	crierrors "k8s.io/cri-api/pkg/errors"
	"k8s.io/klog/v2"
)

// mountPlan is the container's mounts, worked out (and host paths created)
// before any option runs, so mount errors come out of ContainerSpecOpts.
type mountPlan struct {
	// binds are the CRI and extra bind mounts, sorted so that parents come first.
	binds []runtimespec.Mount
	// dests holds every bind destination (cleaned): default mounts there go.
	dests map[string]struct{}
	// rootPropagation is "", "rslave" or "rshared".
	rootPropagation string
	// cgroupOptions are the options of the /sys/fs/cgroup mount.
	cgroupOptions []string
}

// inMounts tells whether a CRI mount has destination dst.
func inMounts(dst string, mounts []*runtimeapi.Mount) bool {
	dst = filepath.Clean(dst)
	for _, m := range mounts {
		if filepath.Clean(m.GetContainerPath()) == dst {
			return true
		}
	}
	return false
}

// ImageVolumes maps each VOLUME of the image config that no CRI mount
// covers (container path) to the host directory under dir that backs it.
func ImageVolumes(img ocispec.Image, criMounts []*runtimeapi.Mount, dir string) map[string]string {
	out := map[string]string{}
	for v := range img.Config.Volumes {
		dst := v
		if !strings.HasPrefix(dst, "/") {
			dst = filepath.Join("/", dst)
		}
		dst = filepath.Clean(dst)
		if inMounts(dst, criMounts) {
			continue
		}
		sum := sha256.Sum256([]byte(dst))
		out[dst] = filepath.Join(dir, hex.EncodeToString(sum[:16]))
	}
	return out
}

func fileExists(p string) bool {
	if p == "" {
		return false
	}
	_, err := os.Stat(p)
	return err == nil
}

// extraMounts are the sandbox files a container gets (/etc/hostname,
// /etc/hosts, /etc/resolv.conf with the rootfs's read-only setting, and
// /dev/shm read-write) unless a CRI mount has the destination or the file
// does not exist, then the image volumes when ImageVolumeDir is set.
func extraMounts(p ContainerParams, hostIPC bool) []*runtimeapi.Mount {
	cfg := p.Config
	sc := cfg.GetLinux().GetSecurityContext()
	cri := cfg.GetMounts()
	var uids, gids []*runtimeapi.IDMapping
	if u := sc.GetNamespaceOptions().GetUsernsOptions(); u != nil {
		uids, gids = u.GetUids(), u.GetGids()
	}
	var out []*runtimeapi.Mount
	for _, f := range []struct{ dst, src string }{
		{etcHostname, p.HostnamePath},
		{etcHosts, p.HostsPath},
		{etcResolvConf, p.ResolvConfPath},
	} {
		if inMounts(f.dst, cri) || !fileExists(f.src) {
			continue
		}
		out = append(out, &runtimeapi.Mount{
			ContainerPath: f.dst,
			HostPath:      f.src,
			Readonly:      sc.GetReadonlyRootfs(),
			UidMappings:   uids,
			GidMappings:   gids,
		})
	}
	if !inMounts(devShm, cri) {
		src := p.ShmPath
		if hostIPC {
			src = devShm
		}
		if fileExists(src) {
			out = append(out, &runtimeapi.Mount{ContainerPath: devShm, HostPath: src})
		}
	}
	if p.ImageVolumeDir != "" {
		vols := ImageVolumes(p.ImageConfig, cri, p.ImageVolumeDir)
		dsts := make([]string, 0, len(vols))
		for dst := range vols {
			dsts = append(dsts, dst)
		}
		sort.Strings(dsts)
		for _, dst := range dsts {
			out = append(out, &runtimeapi.Mount{
				ContainerPath: dst,
				HostPath:      vols[dst],
				UidMappings:   uids,
				GidMappings:   gids,
			})
		}
	}
	return out
}

// planMounts merges the CRI mounts with the extra ones (CRI wins on equal
// destinations), validates them, creates missing host directories and builds
// the OCI bind mounts.
func (g *Generator) planMounts(cfg *runtimeapi.ContainerConfig, extra []*runtimeapi.Mount, supportsRRO, cgroupNS bool) (*mountPlan, error) {
	cri := cfg.GetMounts()
	mounts := slices.Clone(cri)
	for _, e := range extra {
		if !inMounts(e.GetContainerPath(), cri) {
			mounts = append(mounts, e)
		}
	}
	// Mounts with fewer path parts first, so parents do not shadow children.
	sort.SliceStable(mounts, func(i, j int) bool {
		return pathParts(mounts[i].GetContainerPath()) < pathParts(mounts[j].GetContainerPath())
	})

	plan := &mountPlan{dests: map[string]struct{}{}, cgroupOptions: g.cgroupMountOptions(cgroupNS)}
	// Validate everything before touching the host.
	for _, m := range mounts {
		if m.GetHostPath() == "" {
			return nil, invalidArgument("mount for %q has an empty host path", m.GetContainerPath())
		}
		if m.GetContainerPath() == "" {
			return nil, invalidArgument("mount of %q has an empty container path", m.GetHostPath())
		}
		if m.GetRecursiveReadOnly() {
			if !m.GetReadonly() {
				return nil, invalidArgument("recursive read-only mount conflicts with RW mount (hostPath=%q)", m.GetHostPath())
			}
			if !supportsRRO {
				return nil, fmt.Errorf("%w: runtime handler does not support recursive read-only mounts (hostPath=%q): %w",
					crierrors.ErrRROUnsupported, m.GetHostPath(), errdefs.ErrInvalidArgument)
			}
			if m.GetPropagation() != runtimeapi.MountPropagation_PROPAGATION_PRIVATE {
				return nil, invalidArgument("recursive read-only mount needs private propagation, got %q (hostPath=%q)",
					m.GetPropagation().String(), m.GetHostPath())
			}
		}
	}
	for _, m := range mounts {
		src, dst := m.GetHostPath(), m.GetContainerPath()
		if _, err := os.Stat(src); err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("stat %q: %w", src, err)
			}
			// containerd creates a missing host path as a directory.
			if err := os.MkdirAll(src, 0o755); err != nil {
				return nil, fmt.Errorf("creating host path %q: %w", src, err)
			}
		}
		src, err := resolveSymlink(src)
		if err != nil {
			return nil, fmt.Errorf("resolving symlink %q: %w", m.GetHostPath(), err)
		}
		options := []string{"rbind"}
		switch m.GetPropagation() {
		case runtimeapi.MountPropagation_PROPAGATION_PRIVATE:
			options = append(options, "rprivate")
		case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
			if err := g.ensurePropagation(src, false); err != nil {
				return nil, err
			}
			options = append(options, "rshared")
			plan.rootPropagation = "rshared"
		case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
			if err := g.ensurePropagation(src, true); err != nil {
				return nil, err
			}
			options = append(options, "rslave")
			if plan.rootPropagation != "rshared" {
				plan.rootPropagation = "rslave"
			}
		default:
			klog.InfoS("Unknown mount propagation, using rprivate", "hostPath", m.GetHostPath(), "propagation", m.GetPropagation())
			options = append(options, "rprivate")
		}
		switch {
		case m.GetReadonly() && m.GetRecursiveReadOnly():
			options = append(options, "rro")
		case m.GetReadonly():
			options = append(options, "ro")
		default:
			options = append(options, "rw")
		}
		// selinux_relabel is ignored: no SELinux support.
		plan.binds = append(plan.binds, runtimespec.Mount{
			Source:      src,
			Destination: dst,
			Type:        "bind",
			Options:     options,
			UIDMappings: idMappings(m.GetUidMappings()),
			GIDMappings: idMappings(m.GetGidMappings()),
		})
		plan.dests[filepath.Clean(dst)] = struct{}{}
	}
	return plan, nil
}

func pathParts(p string) int {
	return strings.Count(filepath.Clean(p), string(os.PathSeparator))
}

func resolveSymlink(p string) (string, error) {
	fi, err := os.Lstat(p)
	if err != nil {
		return "", err
	}
	if fi.Mode()&os.ModeSymlink == 0 {
		return p, nil
	}
	return filepath.EvalSymlinks(p)
}

func idMappings(in []*runtimeapi.IDMapping) []runtimespec.LinuxIDMapping {
	if in == nil {
		return nil
	}
	out := make([]runtimespec.LinuxIDMapping, 0, len(in))
	for _, m := range in {
		out = append(out, runtimespec.LinuxIDMapping{HostID: m.GetHostId(), ContainerID: m.GetContainerId(), Size: m.GetLength()})
	}
	return out
}

// ensurePropagation checks that the mount holding p is shared (or, when
// slaveOK, shared or a slave): bidirectional and host-to-container propagation
// cannot work otherwise.
func (g *Generator) ensurePropagation(p string, slaveOK bool) error {
	info, err := g.host.lookupMount(p)
	if err != nil {
		return fmt.Errorf("looking up the mount of %q: %w", p, err)
	}
	for opt := range strings.FieldsSeq(info.Optional) {
		if strings.HasPrefix(opt, "shared:") || (slaveOK && strings.HasPrefix(opt, "master:")) {
			return nil
		}
	}
	if slaveOK {
		return failedPrecondition("path %q is mounted on %q but it is not a shared or slave mount", p, info.Mountpoint)
	}
	return failedPrecondition("path %q is mounted on %q but it is not a shared mount", p, info.Mountpoint)
}

// cgroupMountOptions are the options of the container's /sys/fs/cgroup
// mount. Without a cgroup namespace the host's cgroup2 superblock is shared,
// so its nsdelegate/memory_recursiveprot options are kept.
func (g *Generator) cgroupMountOptions(cgroupNS bool) []string {
	opts := []string{"nosuid", "noexec", "nodev", "relatime", "ro"}
	if cgroupNS {
		return opts
	}
	c := &g.hostCgroupOpts
	c.once.Do(func() {
		if info, err := g.host.lookupMount("/sys/fs/cgroup"); err == nil && info.Mountpoint == "/sys/fs/cgroup" {
			for o := range strings.SplitSeq(info.VFSOptions, ",") {
				if o == "nsdelegate" || o == "memory_recursiveprot" {
					c.opts = append(c.opts, o)
				}
			}
		}
	})
	return append(opts, c.opts...)
}

// withContainerMounts adds the /sys/fs/cgroup mount, drops the default
// mounts a bind mount replaces (everything under /dev when /dev itself is
// mounted), appends the bind mounts and sets the root propagation.
func withContainerMounts(plan *mountPlan) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *runtimespec.Spec) error {
		s.Mounts = append(s.Mounts, runtimespec.Mount{
			Source:      "cgroup",
			Destination: "/sys/fs/cgroup",
			Type:        "cgroup",
			Options:     slices.Clone(plan.cgroupOptions),
		})
		_, devMounted := plan.dests["/dev"]
		defaults := s.Mounts
		s.Mounts = nil
		for _, m := range defaults {
			dst := filepath.Clean(m.Destination)
			if _, ok := plan.dests[dst]; ok {
				continue
			}
			if devMounted && strings.HasPrefix(dst, "/dev/") {
				continue
			}
			s.Mounts = append(s.Mounts, m)
		}
		s.Mounts = append(s.Mounts, plan.binds...)
		if plan.rootPropagation != "" {
			if s.Linux == nil {
				s.Linux = &runtimespec.Linux{}
			}
			s.Linux.RootfsPropagation = plan.rootPropagation
		}
		return nil
	}
}
