package spec

import (
	"errors"
	"os"
	"path/filepath"
	"strings"

	ctrdapparmor "github.com/containerd/containerd/v2/contrib/apparmor"
	ctrdseccomp "github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/containerd/containerd/v2/pkg/oci"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// seccompOpt returns the seccomp option for a profile (nil: no seccomp).
// sp is the SecurityProfile field, legacy the deprecated seccomp_profile_path.
// Privileged workloads get no seccomp. RuntimeDefault must be applied after
// the capability options: the default profile depends on the capabilities.
func (g *Generator) seccompOpt(sp *runtimeapi.SecurityProfile, legacy string, privileged bool, profileRoot string) (oci.SpecOpts, error) {
	if sp == nil {
		var err error
		if sp, err = parseLegacyProfile(legacy); err != nil {
			return nil, err
		}
	}
	if privileged {
		return nil, nil
	}
	if !g.host.seccompEnabled() {
		if sp != nil && sp.GetProfileType() != runtimeapi.SecurityProfile_Unconfined {
			return nil, notImplemented("seccomp is not supported")
		}
		return nil, nil
	}
	if sp == nil {
		return nil, nil
	}
	if sp.GetProfileType() != runtimeapi.SecurityProfile_Localhost && sp.GetLocalhostRef() != "" {
		return nil, invalidArgument("seccomp config invalid: LocalhostRef must only be set if ProfileType is Localhost")
	}
	switch sp.GetProfileType() {
	case runtimeapi.SecurityProfile_Unconfined:
		return nil, nil
	case runtimeapi.SecurityProfile_RuntimeDefault:
		return ctrdseccomp.WithDefaultProfile(), nil
	case runtimeapi.SecurityProfile_Localhost:
		p := strings.TrimPrefix(sp.GetLocalhostRef(), localhostPrefix)
		if p == "" {
			return nil, invalidArgument("seccomp localhost profile without a path")
		}
		if !filepath.IsAbs(p) && profileRoot != "" {
			p = filepath.Join(profileRoot, p)
		}
		if _, err := os.Stat(p); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil, invalidArgument("seccomp profile %q not found", p)
			}
			return nil, err
		}
		return ctrdseccomp.WithProfile(p), nil
	default:
		return nil, invalidArgument("unknown seccomp profile type %v", sp.GetProfileType())
	}
}

// apparmorOpt returns the AppArmor option (nil: none). Without AppArmor on the
// host (or when disabled) anything but Unconfined is an error, as in
// containerd; with it, an unset profile means runtime/default, which
// privileged containers skip.
func (g *Generator) apparmorOpt(sp *runtimeapi.SecurityProfile, legacy string, privileged, disabled bool) (oci.SpecOpts, error) {
	if sp == nil {
		var err error
		if sp, err = parseLegacyProfile(legacy); err != nil {
			return nil, err
		}
	}
	if disabled || !g.host.apparmorEnabled() {
		if sp != nil && sp.GetProfileType() != runtimeapi.SecurityProfile_Unconfined {
			return nil, notImplemented("apparmor is not supported")
		}
		return nil, nil
	}
	if sp == nil {
		sp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
	}
	if sp.GetProfileType() != runtimeapi.SecurityProfile_Localhost && sp.GetLocalhostRef() != "" {
		return nil, invalidArgument("apparmor config invalid: LocalhostRef must only be set if ProfileType is Localhost")
	}
	switch sp.GetProfileType() {
	case runtimeapi.SecurityProfile_Unconfined:
		return nil, nil
	case runtimeapi.SecurityProfile_RuntimeDefault:
		if privileged {
			return nil, nil
		}
		return ctrdapparmor.WithDefaultProfile(AppArmorDefaultProfile), nil
	case runtimeapi.SecurityProfile_Localhost:
		name := strings.TrimPrefix(sp.GetLocalhostRef(), localhostPrefix)
		ok, err := g.host.apparmorProfileExists(name)
		if err != nil {
			return nil, invalidArgument("apparmor profile %q: %v", name, err)
		}
		if !ok {
			return nil, invalidArgument("apparmor profile not found %s", name)
		}
		return ctrdapparmor.WithProfile(name), nil
	default:
		return nil, invalidArgument("unknown apparmor profile type %v", sp.GetProfileType())
	}
}

// capName normalizes a CRI capability name ("chown", "CAP_CHOWN") to "CAP_CHOWN".
func capName(c string) string {
	c = strings.ToUpper(c)
	if !strings.HasPrefix(c, "CAP_") {
		c = "CAP_" + c
	}
	return c
}

func isAll(c string) bool { return strings.EqualFold(c, "ALL") }

// capabilityOpt applies add/drop like containerd: "ALL" in add sets every
// capability the daemon has, "ALL" in drop clears all, then the named
// capabilities are added and dropped. The base is the OCI default set.
func (g *Generator) capabilityOpt(c *runtimeapi.Capability) (oci.SpecOpts, error) {
	if c == nil {
		return nil, nil
	}
	var opts []oci.SpecOpts
	var add, drop []string
	addAll, dropAll := false, false
	for _, a := range c.GetAddCapabilities() {
		if isAll(a) {
			addAll = true
			continue
		}
		add = append(add, capName(a))
	}
	for _, d := range c.GetDropCapabilities() {
		if isAll(d) {
			dropAll = true
			continue
		}
		drop = append(drop, capName(d))
	}
	if addAll {
		all, err := g.host.currentCaps()
		if err != nil {
			return nil, err
		}
		opts = append(opts, oci.WithCapabilities(all))
	}
	if dropAll {
		opts = append(opts, oci.WithCapabilities(nil))
	}
	opts = append(opts, oci.WithAddedCapabilities(add), oci.WithDroppedCapabilities(drop))
	return oci.Compose(opts...), nil
}
