package server

import (
	"fmt"
	"os"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// SELinux: cri-containerd does not apply SELinux labels. On a host without
// SELinux, selinux_options are ignored, as containerd does. On a host with
// SELinux enabled they cannot be honoured, so a request carrying them is
// refused rather than run unlabelled without a word.

// hostSELinuxEnabled reports whether the kernel has SELinux enabled
// (selinuxfs mounted at its standard place).
func hostSELinuxEnabled() bool {
	_, err := os.Stat("/sys/fs/selinux/enforce")
	return err == nil
}

func selinuxStatus(enabled bool) string {
	if enabled {
		return "enabled on the host; SELinux labels are not supported: requests with selinux_options are refused"
	}
	return "disabled on the host; selinux_options are ignored"
}

// checkSELinux refuses selinux_options when the host enforces SELinux.
func (s *Service) checkSELinux(req any) error {
	if !s.selinuxEnabled {
		return nil
	}
	var field string
	var opts *runtimeapi.SELinuxOption
	switch r := req.(type) {
	case *runtimeapi.RunPodSandboxRequest:
		field, opts = "config.linux.security_context.selinux_options", r.GetConfig().GetLinux().GetSecurityContext().GetSelinuxOptions()
	case *runtimeapi.CreateContainerRequest:
		field, opts = "config.linux.security_context.selinux_options", r.GetConfig().GetLinux().GetSecurityContext().GetSelinuxOptions()
	}
	if opts == nil || (opts.GetUser() == "" && opts.GetRole() == "" && opts.GetType() == "" && opts.GetLevel() == "") {
		return nil
	}
	return fmt.Errorf("%s: SELinux is enabled on this host but cri-containerd cannot apply SELinux labels: %w", field, errdefs.ErrFailedPrecondition)
}
