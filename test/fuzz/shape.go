package main

import (
	"net"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// walk calls fn on m and on every message below it.
func walk(m protoreflect.Message, fn func(protoreflect.Message)) {
	fn(m)
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Kind() == protoreflect.MessageKind:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walk(l.Get(i).Message(), fn)
			}
		case fd.IsMap() && fd.MapValue().Kind() == protoreflect.MessageKind:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				walk(mv.Message(), fn)
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Kind() == protoreflect.MessageKind:
			walk(v.Message(), fn)
		}
		return true
	})
}

func stringField(m protoreflect.Message, name string) protoreflect.FieldDescriptor {
	fd := m.Descriptor().Fields().ByName(protoreflect.Name(name))
	if fd == nil || fd.Kind() != protoreflect.StringKind || fd.IsList() || fd.IsMap() {
		return nil
	}
	return fd
}

func getString(m protoreflect.Message, name string) (string, bool) {
	fd := stringField(m, name)
	if fd == nil {
		return "", false
	}
	return m.Get(fd).String(), true
}

func setString(m protoreflect.Message, name, v string) {
	if fd := stringField(m, name); fd != nil {
		m.Set(fd, protoreflect.ValueOfString(v))
	}
}

// inject points the request at the real pod, container and image, each
// reference with probability p.
func (f *fuzzer) inject(m protoreflect.Message, p float64) {
	walk(m, func(m protoreflect.Message) {
		name := string(m.Descriptor().Name())
		set := func(field, v string) {
			if _, ok := getString(m, field); ok && v != "" && f.g.chance(p) {
				setString(m, field, v)
			}
		}
		set("pod_sandbox_id", f.real.podID)
		set("container_id", f.real.ctrID)
		set("target_id", f.real.ctrID)
		switch {
		case strings.HasPrefix(name, "PodSandbox"):
			set("id", f.real.podID)
		case strings.HasPrefix(name, "Container"):
			set("id", f.real.ctrID)
		case name == "ImageSpec":
			set("image", f.cfg.Image)
		}
	})
}

// confine keeps the effects of accepted requests on the host inside what
// the fuzzer owns, so that fuzzing a daemon on a shared machine cannot
// hijack other traffic or litter the file system:
//   - host ports become ports of the fuzzer's range (a DNAT of a random
//     host port, say the registry's, would take other people's connections),
//   - mount host paths, pod log directories and seccomp profiles move under
//     the fuzzer's work directory (a mount's missing host path is created),
//   - device host paths become /dev/null, a cgroup parent is dropped unless
//     it is invalid anyway (runc would create it at the cgroup root),
//   - a pod CIDR that parses is dropped (it would be routed on the bridge).
//
// Values validation must reject are left as they are.
func (f *fuzzer) confine(m protoreflect.Message) {
	walk(m, func(m protoreflect.Message) {
		fields := m.Descriptor().Fields()
		switch m.Descriptor().Name() {
		case "PortMapping":
			fd := fields.ByName("host_port")
			if p := m.Get(fd).Int(); p > 0 && p <= 65535 {
				m.Set(fd, protoreflect.ValueOfInt32(int32(f.cfg.HostPortMin+int(p)%(f.cfg.HostPortMax-f.cfg.HostPortMin+1))))
			}
		case "Mount":
			if p, _ := getString(m, "host_path"); filepath.IsAbs(p) {
				setString(m, "host_path", f.inside("hostpaths", p))
			}
		case "Device":
			if p, _ := getString(m, "host_path"); filepath.IsAbs(p) {
				setString(m, "host_path", "/dev/null")
			}
		case "PodSandboxConfig":
			if p, _ := getString(m, "log_directory"); filepath.IsAbs(p) {
				setString(m, "log_directory", f.inside("logs", p))
			}
		case "LinuxPodSandboxConfig":
			if p, _ := getString(m, "cgroup_parent"); p != "" && !strings.Contains(p, "..") {
				setString(m, "cgroup_parent", "")
			}
		case "LinuxSandboxSecurityContext", "LinuxContainerSecurityContext":
			if sp := fields.ByName("seccomp"); m.Has(sp) {
				s := m.Mutable(sp).Message()
				if ref, _ := getString(s, "localhost_ref"); ref != "" {
					setString(s, "localhost_ref", f.seccompRef(ref))
				}
			}
			if p, _ := getString(m, "seccomp_profile_path"); strings.HasPrefix(p, "localhost/") {
				setString(m, "seccomp_profile_path", "localhost/"+f.seccompRef(strings.TrimPrefix(p, "localhost/")))
			}
		case "NetworkConfig":
			if c, _ := getString(m, "pod_cidr"); c != "" {
				for _, part := range strings.Split(c, ",") {
					if _, _, err := net.ParseCIDR(strings.TrimSpace(part)); err == nil {
						setString(m, "pod_cidr", "")
						break
					}
				}
			}
		}
	})
}

// inside maps an absolute path into the fuzzer's work directory.
func (f *fuzzer) inside(kind, p string) string {
	if rel, err := filepath.Rel(f.cfg.WorkDir, p); err == nil && filepath.IsLocal(rel) {
		return p
	}
	return filepath.Join(f.cfg.WorkDir, kind, filepath.Clean("/"+p))
}

// seccompRef keeps relative references (validation rejects them) and sends
// absolute ones to the fuzzer's valid profile or to a missing file.
func (f *fuzzer) seccompRef(ref string) string {
	if !filepath.IsAbs(ref) {
		return ref
	}
	if f.g.chance(0.5) {
		return f.profile
	}
	return f.inside("seccomp", ref)
}
