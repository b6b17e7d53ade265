package server

import (
	"context"
	"encoding/json"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"

	"github.com/cri-containerd/cri-containerd/config"
)

// ociFeatures is the part of `runc features` (OCI runtime features) we use.
type ociFeatures struct {
	MountOptions []string `json:"mountOptions"`
	Linux        *struct {
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
func probeRuntimeFeatures(ctx context.Context, runtimes map[string]config.Runtime) map[string]*runtimeapi.RuntimeHandlerFeatures {
	kernelRRO := kernelAtLeast(5, 12)
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
		idmap := feats.Linux != nil && feats.Linux.MountExtensions != nil && feats.Linux.MountExtensions.IDMap != nil &&
			feats.Linux.MountExtensions.IDMap.Enabled != nil && *feats.Linux.MountExtensions.IDMap.Enabled
		// User namespaces are not implemented by cri-containerd yet; report them off regardless.
		klog.InfoS("OCI runtime features", "handler", name, "recursiveReadOnlyMounts", f.RecursiveReadOnlyMounts, "idmapMounts", idmap)
	}
	return out
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
