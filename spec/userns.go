package spec

import (
	"context"
	"fmt"
	"math"
	"slices"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/oci"
	runtimespec "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// userNSFormat is the user namespace of a process (the pause's, which
// containers of a POD-mode pod join).
const userNSFormat = "/proc/%d/ns/user"

// UserNamespaceMappings validates the user namespace options of a pod or
// container and returns the uid and gid mappings of a POD-mode user
// namespace, or nil, nil for the host's (NODE mode, or no options: a kubelet
// that does not know user namespaces).
//
// POD mode takes exactly one uid and one gid mapping line (the snapshotter's
// remapped rootfs carries one) of a non-zero length that maps container ID 0
// (the image's root must exist inside) and does not overflow 32 bits; NODE
// mode takes none; CONTAINER and TARGET are not user namespace modes. Every
// violation is InvalidArgument.
func UserNamespaceMappings(ns *runtimeapi.NamespaceOption) (uids, gids []runtimespec.LinuxIDMapping, err error) {
	u := ns.GetUsernsOptions()
	if u == nil {
		return nil, nil, nil
	}
	switch mode := u.GetMode(); mode {
	case runtimeapi.NamespaceMode_NODE:
		if len(u.GetUids()) != 0 || len(u.GetGids()) != 0 {
			return nil, nil, invalidArgument("user namespace mode NODE takes no mappings, got %d uid and %d gid mapping(s)", len(u.GetUids()), len(u.GetGids()))
		}
		return nil, nil, nil
	case runtimeapi.NamespaceMode_POD:
	default:
		return nil, nil, invalidArgument("unsupported user namespace mode %v (POD or NODE)", mode)
	}
	if uids, err = parseIDMapping("uid", u.GetUids()); err != nil {
		return nil, nil, err
	}
	if gids, err = parseIDMapping("gid", u.GetGids()); err != nil {
		return nil, nil, err
	}
	return uids, gids, nil
}

func parseIDMapping(kind string, in []*runtimeapi.IDMapping) ([]runtimespec.LinuxIDMapping, error) {
	if len(in) != 1 || in[0] == nil {
		return nil, invalidArgument("user namespace mode POD needs exactly one %s mapping, got %d", kind, len(in))
	}
	m := in[0]
	switch {
	case m.GetLength() == 0:
		return nil, invalidArgument("%s mapping %d:%d:%d: the length must be at least 1", kind, m.GetContainerId(), m.GetHostId(), m.GetLength())
	case m.GetContainerId() != 0:
		return nil, invalidArgument("%s mapping %d:%d:%d: container ID 0 must be mapped", kind, m.GetContainerId(), m.GetHostId(), m.GetLength())
	case uint64(m.GetHostId())+uint64(m.GetLength())-1 >= math.MaxUint32:
		// 4294967295 is (uid_t)-1, never a valid ID.
		return nil, invalidArgument("%s mapping %d:%d:%d: host IDs beyond %d", kind, m.GetContainerId(), m.GetHostId(), m.GetLength(), uint32(math.MaxUint32-1))
	}
	return []runtimespec.LinuxIDMapping{{ContainerID: m.GetContainerId(), HostID: m.GetHostId(), Size: m.GetLength()}}, nil
}

// sameUserns tells whether a container asks for the user namespace its pod
// has (same mode and mappings, unset = NODE).
func sameUserns(ctr, sb *runtimeapi.NamespaceOption) error {
	cu, cg, err := UserNamespaceMappings(ctr)
	if err != nil {
		return err
	}
	su, sg, err := UserNamespaceMappings(sb)
	if err != nil {
		return fmt.Errorf("the sandbox's user namespace: %w", err)
	}
	if !slices.Equal(cu, su) || !slices.Equal(cg, sg) {
		return invalidArgument("the container's user namespace (uids %v, gids %v) differs from its pod's (uids %v, gids %v)", cu, cg, su, sg)
	}
	return nil
}

// RemapSnapshotOpts are the snapshot options of a POD-mode user namespace's
// rootfs: containerd's remapper labels, with which the overlayfs snapshotter
// returns idmapped mounts (uidmap=/gidmap= options: idmapped lower layers,
// an upper directory owned by the mapped root), or, with slow_chown, a chowned
// copy. None for the host's user namespace or invalid options (validated by
// the spec options, which run first).
func RemapSnapshotOpts(ns *runtimeapi.NamespaceOption) []snapshots.Opt {
	uids, gids, err := UserNamespaceMappings(ns)
	if err != nil || uids == nil {
		return nil
	}
	return []snapshots.Opt{containerd.WithUserNSRemapperLabels(uids, gids)}
}

// withUserNamespace puts the process in a user namespace with the mappings:
// the one at path, or (path "") a new one.
func withUserNamespace(path string, uids, gids []runtimespec.LinuxIDMapping) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *runtimespec.Spec) error {
		if s.Linux == nil {
			s.Linux = &runtimespec.Linux{}
		}
		s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(n runtimespec.LinuxNamespace) bool {
			return n.Type == runtimespec.UserNamespace
		})
		s.Linux.Namespaces = append(s.Linux.Namespaces, runtimespec.LinuxNamespace{Type: runtimespec.UserNamespace, Path: path})
		s.Linux.UIDMappings = slices.Clone(uids)
		s.Linux.GIDMappings = slices.Clone(gids)
		return nil
	}
}

// withSysBind replaces the sysfs mount at /sys by a recursive read-only bind
// of the host's: a user namespace that does not own the network namespace
// (host network) cannot mount sysfs. Recursive read-only needs kernel 5.12,
// which idmapped overlayfs (5.19), a condition of user namespaces, implies.
var withSysBind oci.SpecOpts = func(_ context.Context, _ oci.Client, _ *containers.Container, s *runtimespec.Spec) error {
	for i, m := range s.Mounts {
		if m.Destination == "/sys" {
			s.Mounts[i] = runtimespec.Mount{Source: "/sys", Destination: "/sys", Type: "bind", Options: []string{"rbind", "rro", "nosuid", "nodev", "noexec"}}
		}
	}
	return nil
}
