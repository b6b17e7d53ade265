package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/pkg/sys"
	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/config"
	"github.com/cri-containerd/cri-containerd/spec"
)

// ociFeatures is the part of `runc features` (OCI runtime features) we use.
type ociFeatures struct {
	MountOptions []string `json:"mountOptions"`
	Linux        *struct {
		Namespaces      []string `json:"namespaces"`
		MountExtensions *struct {
			IDMap *struct {
				Enabled *bool `json:"enabled"`
			} `json:"idmap"`
		} `json:"mountExtensions"`
	} `json:"linux"`
}

// probeRuntimeFeatures asks each handler's OCI runtime binary for its
// features. The runtime runs on this host, so asking the binary works with
// every containerd version (containerd's own introspection needs 2.x).
//
// User namespaces (CRI POD mode) need, as containerd's CRI has it, a runtime
// with user namespaces and idmapped mounts (runc >= 1.2; Debian's 1.1.5 has
// none), and here also a kernel that idmaps overlayfs (5.19) and the
// filesystem of idmapProbeDir (the daemon's root, where volumes and pod files
// live) accepting an idmapped mount.
func probeRuntimeFeatures(ctx context.Context, runtimes map[string]config.Runtime, idmapProbeDir string) map[string]*runtimeapi.RuntimeHandlerFeatures {
	kernelRRO := kernelAtLeast(5, 12)
	hostIDMap := sync.OnceValue(func() error {
		if !kernelAtLeast(5, 19) {
			return errors.New("kernel older than 5.19 (idmapped overlayfs)")
		}
		return probeIDMapMount(idmapProbeDir)
	})
	out := map[string]*runtimeapi.RuntimeHandlerFeatures{}
	for name, rt := range runtimes {
		f := &runtimeapi.RuntimeHandlerFeatures{}
		out[name] = f
		bin := rt.BinaryName
		if bin == "" {
			bin = "runc"
		}
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		raw, err := exec.CommandContext(cctx, bin, "features").Output()
		cancel()
		if err != nil {
			klog.InfoS("Cannot introspect OCI runtime features; assuming none", "handler", name, "binary", bin, "err", err)
			continue
		}
		var feats ociFeatures
		if err := json.Unmarshal(raw, &feats); err != nil {
			klog.InfoS("Cannot parse OCI runtime features", "handler", name, "err", err)
			continue
		}
		f.RecursiveReadOnlyMounts = kernelRRO && slices.Contains(feats.MountOptions, "rro")
		f.UserNamespaces = ociUserns(feats)
		if f.UserNamespaces {
			if err := hostIDMap(); err != nil {
				klog.InfoS("The host cannot idmap mounts: no user namespaces", "handler", name, "dir", idmapProbeDir, "err", err)
				f.UserNamespaces = false
			}
		}
		klog.InfoS("OCI runtime features", "handler", name, "binary", bin, "recursiveReadOnlyMounts", f.RecursiveReadOnlyMounts, "userNamespaces", f.UserNamespaces)
	}
	return out
}

// ociUserns: the runtime can create user namespaces and idmap mounts.
func ociUserns(f ociFeatures) bool {
	l := f.Linux
	if l == nil || !slices.Contains(l.Namespaces, "user") {
		return false
	}
	m := l.MountExtensions
	return m != nil && m.IDMap != nil && m.IDMap.Enabled != nil && *m.IDMap.Enabled
}

// probeIDMapMount idmaps a detached clone of dir (its nearest existing
// ancestor) with a throw-away user namespace, as critest does.
func probeIDMapMount(dir string) error {
	for dir != "/" {
		if _, err := os.Stat(dir); err == nil {
			break
		}
		dir = filepath.Dir(dir)
	}
	tree, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open_tree %s: %w", dir, err)
	}
	defer unix.Close(tree)
	return sys.UnshareAfterEnterUserns("0:65536:65536", "0:65536:65536", 0, func(pid int) error {
		userns, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", pid))
		if err != nil {
			return err
		}
		defer userns.Close()
		attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns.Fd())}
		if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, &attr); err != nil {
			return fmt.Errorf("mount_setattr(MOUNT_ATTR_IDMAP) on %s: %w", dir, err)
		}
		return nil
	})
}

// checkUserNamespaces refuses a POD-mode user namespace with invalid
// mappings (InvalidArgument) or on a runtime handler without user namespace
// support (Unimplemented: with Debian's runc 1.1.5 for instance), before
// anything is made.
func (s *Service) checkUserNamespaces(cfg *runtimeapi.PodSandboxConfig, runtimeHandler string) error {
	uids, _, err := spec.UserNamespaceMappings(cfg.GetLinux().GetSecurityContext().GetNamespaceOptions())
	if err != nil || uids == nil {
		return err
	}
	handler, _, err := s.config.RuntimeFor(runtimeHandler)
	if err != nil {
		return err
	}
	if !s.handlerFeatures(handler).GetUserNamespaces() {
		return fmt.Errorf("runtime handler %q does not support user namespaces (it needs an OCI runtime with idmapped mounts, e.g. runc >= 1.2, and a kernel that idmaps the filesystems): %w", handler, errdefs.ErrNotImplemented)
	}
	return nil
}

func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	rel := unix.ByteSliceToString(u.Release[:])
	parts := strings.SplitN(rel, ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, err1 := strconv.Atoi(parts[0])
	mi, err2 := strconv.Atoi(strings.TrimFunc(parts[1], func(r rune) bool { return r < '0' || r > '9' }))
	if err1 != nil || err2 != nil {
		return false
	}
	return ma > major || (ma == major && mi >= minor)
}

func (s *Service) handlerFeatures(name string) *runtimeapi.RuntimeHandlerFeatures {
	if f, ok := s.features[name]; ok {
		return f
	}
	return &runtimeapi.RuntimeHandlerFeatures{}
}
