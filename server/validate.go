package server

import (
	"context"
	"fmt"
	"maps"
	"math"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/containerd/containerd/v2/pkg/cap"
	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/cni"
)

// Request validation. Every CRI request is checked here, by the gRPC
// interceptors (instrument.go), before its handler runs: a bad request gets
// InvalidArgument with a message naming the field, and no handler ever
// starts work (netns, files, containerd objects, CNI) it would have to undo.
//
// The rules follow the CRI API comments (k8s.io/cri-api api.proto) and
// kubelet's own validation, and reject what would otherwise fail deep in
// runc or a CNI plugin with codes.Unknown, or succeed and do harm (paths
// that climb out of their directory, relative paths resolved against the
// daemon's working directory). They are deliberately no stricter than what
// kubelet and critest send: capability names with or without CAP_ and "ALL",
// negative oom_score_adj, memory limit 0 (unlimited), cpu_quota -1 and 0,
// an empty log_directory (no log) are all valid.

const (
	// maxNameLen bounds the metadata names, namespaces and UIDs (a DNS-1123
	// subdomain, kubelet's longest name).
	maxNameLen = 253
	// maxHostnameLen is the kernel's limit (__NEW_UTS_LEN).
	maxHostnameLen = 64
	// maxSysctlNameLen is kubelet's limit on sysctl names.
	maxSysctlNameLen = 253
	// maxPathLen is the kernel's PATH_MAX.
	maxPathLen = 4096
	// maxTimeoutSeconds is the largest timeout that still fits a time.Duration.
	maxTimeoutSeconds = int64(math.MaxInt64 / int64(time.Second))
	// minCPUPeriod, maxCPUPeriod and minCPUQuota are the kernel's CFS bounds (µs).
	minCPUPeriod = 1000
	maxCPUPeriod = 1000000
	minCPUQuota  = 1000
	// minCPUShares and maxCPUShares are the kernel's (and kubelet's) bounds.
	minCPUShares = 2
	maxCPUShares = 262144
	// minMemoryLimit is the smallest container memory limit accepted (6 MiB,
	// Docker's and dockershim's minimum). runc cannot apply a limit below
	// what its own init process already uses in the new cgroup (3.2-3.9 MiB
	// measured with runc 1.1.5 and 1.5.3 on cgroup v1: "unable to set
	// memory limit to N (current usage: M)"), and fails the start with
	// Unknown; a container that fits a few MiB is not useful either.
	// Pod-level limits and overheads are not checked: nothing applies them
	// to a cgroup on their own.
	minMemoryLimit = 6 << 20
)

// requestValidator is what the interceptors call before every handler; the
// Service implements it (info.Server).
type requestValidator interface {
	validateRequest(ctx context.Context, req any) error
}

// validateRequest checks a request on its own (validateRequestFields), then
// the cheap references to other objects the handler would only find later.
func (s *Service) validateRequest(_ context.Context, req any) error {
	if err := validateRequestFields(req); err != nil {
		return err
	}
	if err := s.checkSELinux(req); err != nil {
		return err
	}
	switch r := req.(type) {
	case *runtimeapi.RunPodSandboxRequest:
		sc := r.GetConfig().GetLinux().GetSecurityContext()
		return checkSeccompFile("config.linux.security_context.seccomp", seccompFile(sc.GetSeccomp(), sc.GetSeccompProfilePath())) //nolint:staticcheck // deprecated field still honoured
	case *runtimeapi.CreateContainerRequest:
		sc := r.GetConfig().GetLinux().GetSecurityContext()
		if err := checkSeccompFile("config.linux.security_context.seccomp", seccompFile(sc.GetSeccomp(), sc.GetSeccompProfilePath())); err != nil { //nolint:staticcheck // deprecated field still honoured
			return err
		}
		return s.checkPIDTarget(r)
	}
	return nil
}

// validated runs the server's validator, if it has one, before the handler.
func validated(ctx context.Context, server, req any, handler grpc.UnaryHandler) (any, error) {
	if v, ok := server.(requestValidator); ok {
		if err := v.validateRequest(ctx, req); err != nil {
			return nil, err
		}
	}
	return handler(ctx, req)
}

// validatingStream validates the request message of a server-streaming RPC
// when the handler receives it.
func validatingStream(server any, ss grpc.ServerStream) grpc.ServerStream {
	v, ok := server.(requestValidator)
	if !ok {
		return ss
	}
	return &validatedServerStream{ServerStream: ss, v: v}
}

type validatedServerStream struct {
	grpc.ServerStream
	v requestValidator
}

func (s *validatedServerStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return s.v.validateRequest(s.Context(), m)
}

// checkPIDTarget: the target of a TARGET PID namespace must be a container
// of the same pod (api.proto: "This container must have been previously
// created in the same pod").
func (s *Service) checkPIDTarget(r *runtimeapi.CreateContainerRequest) error {
	ns := r.GetConfig().GetLinux().GetSecurityContext().GetNamespaceOptions()
	if ns.GetPid() != runtimeapi.NamespaceMode_TARGET || s.containers == nil {
		return nil
	}
	target, err := s.containers.Get(ns.GetTargetId())
	if err != nil {
		return fmt.Errorf("config.linux.security_context.namespace_options.target_id: %w", err)
	}
	sb, err := s.sandboxes.Get(r.GetPodSandboxId())
	if err != nil {
		return fmt.Errorf("pod_sandbox_id: %w", err)
	}
	if target.SandboxID != sb.ID {
		return invalidField("config.linux.security_context.namespace_options.target_id",
			"container %s is not in pod sandbox %s", target.ID, sb.ID)
	}
	return nil
}

// validateRequestFields checks one CRI request message without looking at
// any state. Requests of RPCs that are not implemented are not checked.
func validateRequestFields(req any) error {
	if m, ok := req.(proto.Message); ok {
		if err := checkEnums(m.ProtoReflect(), ""); err != nil {
			return err
		}
	}
	switch r := req.(type) {
	case *runtimeapi.RunPodSandboxRequest:
		return checkPodSandboxConfig("config", r.GetConfig(), true)
	case *runtimeapi.CreateContainerRequest:
		if sc := r.GetSandboxConfig(); sc != nil {
			if err := checkPodSandboxConfig("sandbox_config", sc, false); err != nil {
				return err
			}
		}
		return checkContainerConfig("config", r.GetConfig())
	case *runtimeapi.UpdateContainerResourcesRequest:
		if err := checkResources("linux", r.GetLinux()); err != nil {
			return err
		}
		return checkMemoryLimit("linux", r.GetLinux())
	case *runtimeapi.UpdatePodSandboxResourcesRequest:
		if err := checkResources("overhead", r.GetOverhead()); err != nil {
			return err
		}
		return checkResources("resources", r.GetResources())
	case *runtimeapi.StopContainerRequest:
		return checkTimeout("timeout", r.GetTimeout())
	case *runtimeapi.ExecSyncRequest:
		if err := checkCmd("cmd", r.GetCmd()); err != nil {
			return err
		}
		return checkTimeout("timeout", r.GetTimeout())
	case *runtimeapi.ExecRequest:
		if err := checkCmd("cmd", r.GetCmd()); err != nil {
			return err
		}
		return checkStreams(r.GetStdin(), r.GetStdout(), r.GetStderr(), r.GetTty())
	case *runtimeapi.AttachRequest:
		return checkStreams(r.GetStdin(), r.GetStdout(), r.GetStderr(), r.GetTty())
	case *runtimeapi.PortForwardRequest:
		for i, p := range r.GetPort() {
			if p < 1 || p > math.MaxUint16 {
				return invalidField(fieldIndex("port", i), "%d is not a port number (1-65535)", p)
			}
		}
	case *runtimeapi.PullImageRequest:
		if sc := r.GetSandboxConfig(); sc != nil {
			return checkPodSandboxConfig("sandbox_config", sc, false)
		}
	}
	return nil
}

// invalidField is the error of a bad field: "<field>: <what>: invalid argument".
func invalidField(field, format string, a ...any) error {
	return fmt.Errorf("%s: %s: %w", field, fmt.Sprintf(format, a...), errdefs.ErrInvalidArgument)
}

func fieldIndex(field string, i int) string { return fmt.Sprintf("%s[%d]", field, i) }

func fieldKey(field, k string) string { return fmt.Sprintf("%s[%s]", field, short(k)) }

// short quotes s for a message, cut to a readable length: a 70 KB name must
// not come back (and be logged) whole.
func short(s string) string {
	const max = 64
	if len(s) <= max {
		return strconv.Quote(s)
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strconv.Quote(s[:cut]) + fmt.Sprintf("... (%d bytes)", len(s))
}

// checkEnums rejects enum values the CRI API does not define (proto3 enums
// are open: any int32 decodes), anywhere in the message.
func checkEnums(m protoreflect.Message, prefix string) error {
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		name := string(fd.Name())
		if prefix != "" {
			name = prefix + "." + name
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				err = checkEnumValue(fd, l.Get(i), fieldIndex(name, i))
			}
		case fd.IsMap():
			if fd.MapValue().Kind() == protoreflect.MessageKind || fd.MapValue().Kind() == protoreflect.EnumKind {
				v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
					err = checkEnumValue(fd.MapValue(), mv, fieldKey(name, k.String()))
					return err == nil
				})
			}
		default:
			err = checkEnumValue(fd, v, name)
		}
		return err == nil
	})
	return err
}

func checkEnumValue(fd protoreflect.FieldDescriptor, v protoreflect.Value, name string) error {
	switch fd.Kind() {
	case protoreflect.EnumKind:
		if fd.Enum().Values().ByNumber(v.Enum()) == nil {
			return invalidField(name, "%d is not a valid %s", v.Enum(), fd.Enum().Name())
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return checkEnums(v.Message(), name)
	}
	return nil
}

// checkName checks a metadata name, namespace or UID. They are joined into
// the unique names, passed to CNI as K8S_POD_* arguments ("K=V;K=V") and
// shown in paths and logs: bounded like kubelet's names, and without control
// characters, white space, path separators or the CNI argument separators.
func checkName(field, s string, required bool) error {
	if s == "" {
		if required {
			return invalidField(field, "is required")
		}
		return nil
	}
	if len(s) > maxNameLen {
		return invalidField(field, "is %d bytes long, at most %d are allowed", len(s), maxNameLen)
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.IsSpace(r) || strings.ContainsRune(`/\;=,`, r) || r == utf8.RuneError {
			return invalidField(field, "%s contains %q", short(s), r)
		}
	}
	return nil
}

// checkNoNUL rejects NUL bytes, which cannot cross execve or a path syscall.
func checkNoNUL(field, s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return invalidField(field, "%s contains a NUL byte", short(s))
	}
	return nil
}

// checkAbsPath checks an absolute path (empty is accepted only if !required).
func checkAbsPath(field, p string, required bool) error {
	if p == "" {
		if required {
			return invalidField(field, "is required")
		}
		return nil
	}
	if err := checkNoNUL(field, p); err != nil {
		return err
	}
	if len(p) > maxPathLen {
		return invalidField(field, "is %d bytes long, at most %d are allowed", len(p), maxPathLen)
	}
	if !path.IsAbs(p) {
		return invalidField(field, "%s is not an absolute path", short(p))
	}
	return nil
}

// checkPodSandboxConfig checks a pod's config. full is set for
// RunPodSandbox; the copies kubelet sends with CreateContainer and PullImage
// are checked the same way except that their metadata may be absent.
func checkPodSandboxConfig(field string, cfg *runtimeapi.PodSandboxConfig, full bool) error {
	if cfg == nil {
		return invalidField(field, "is required")
	}
	md := cfg.GetMetadata()
	if md == nil && full {
		return invalidField(field+".metadata", "is required")
	}
	if md != nil {
		for _, f := range []struct{ name, v string }{
			{"name", md.GetName()}, {"namespace", md.GetNamespace()}, {"uid", md.GetUid()},
		} {
			if err := checkName(field+".metadata."+f.name, f.v, full); err != nil {
				return err
			}
		}
	}
	linux := cfg.GetLinux()
	sc := linux.GetSecurityContext()
	ns := sc.GetNamespaceOptions()
	hostNet := ns.GetNetwork() == runtimeapi.NamespaceMode_NODE
	hostIPC := ns.GetIpc() == runtimeapi.NamespaceMode_NODE

	if h := cfg.GetHostname(); h != "" {
		if len(h) > maxHostnameLen {
			return invalidField(field+".hostname", "is %d bytes long, at most %d are allowed", len(h), maxHostnameLen)
		}
		for _, r := range h {
			if unicode.IsControl(r) || unicode.IsSpace(r) || r == '/' || r == utf8.RuneError {
				return invalidField(field+".hostname", "%s contains %q", short(h), r)
			}
		}
	}
	if err := checkAbsPath(field+".log_directory", cfg.GetLogDirectory(), false); err != nil {
		return err
	}
	if err := checkDNSConfig(field+".dns_config", cfg.GetDnsConfig()); err != nil {
		return err
	}
	if err := checkPortMappings(field+".port_mappings", cfg.GetPortMappings()); err != nil {
		return err
	}
	if _, err := cni.Bandwidth(cfg.GetAnnotations()); err != nil {
		return fmt.Errorf("%s.annotations: %w", field, err)
	}

	lf := field + ".linux"
	if err := checkCgroupParent(lf+".cgroup_parent", linux.GetCgroupParent()); err != nil {
		return err
	}
	for _, k := range slices.Sorted(maps.Keys(linux.GetSysctls())) {
		if err := checkSysctl(fieldKey(lf+".sysctls", k), k, linux.GetSysctls()[k], hostNet, hostIPC); err != nil {
			return err
		}
	}
	if err := checkResources(lf+".overhead", linux.GetOverhead()); err != nil {
		return err
	}
	if err := checkResources(lf+".resources", linux.GetResources()); err != nil {
		return err
	}

	scf := lf + ".security_context"
	if err := checkNamespaceOptions(scf+".namespace_options", ns, true); err != nil {
		return err
	}
	if err := checkUser(scf, sc.GetRunAsUser(), sc.GetRunAsGroup(), ""); err != nil {
		return err
	}
	if err := checkGroups(scf+".supplemental_groups", sc.GetSupplementalGroups()); err != nil {
		return err
	}
	if err := checkSeccomp(scf, sc.GetSeccomp(), sc.GetSeccompProfilePath()); err != nil { //nolint:staticcheck // deprecated field still honoured
		return err
	}
	return checkProfile(scf+".apparmor", sc.GetApparmor())
}

func checkDNSConfig(field string, dns *runtimeapi.DNSConfig) error {
	for i, s := range dns.GetServers() {
		if _, err := netip.ParseAddr(s); err != nil {
			return invalidField(fieldIndex(field+".servers", i), "%s is not an IP address", short(s))
		}
	}
	// Each entry becomes a word of a resolv.conf line.
	for _, l := range []struct {
		name string
		v    []string
	}{{"searches", dns.GetSearches()}, {"options", dns.GetOptions()}} {
		for i, s := range l.v {
			if s == "" || len(s) > maxNameLen || strings.ContainsFunc(s, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) {
				return invalidField(fieldIndex(field+"."+l.name, i), "%s is not a single word of 1-%d bytes", short(s), maxNameLen)
			}
		}
	}
	return nil
}

// checkPortMappings: container_port 1-65535 (0 makes portmap fail on ADD
// and DEL, leaking the address), host_port 0 (none) to 65535, a known
// protocol (checkEnums), host_ip empty or an address, and no host port
// mapped twice for the same protocol and address.
func checkPortMappings(field string, pms []*runtimeapi.PortMapping) error {
	type hostKey struct {
		ip    string
		port  int32
		proto runtimeapi.Protocol
	}
	seen := map[hostKey]int{}
	for i, pm := range pms {
		f := fieldIndex(field, i)
		if pm == nil {
			return invalidField(f, "is empty")
		}
		if p := pm.GetContainerPort(); p < 1 || p > math.MaxUint16 {
			return invalidField(f+".container_port", "%d is not a port number (1-65535)", p)
		}
		if p := pm.GetHostPort(); p < 0 || p > math.MaxUint16 {
			return invalidField(f+".host_port", "%d is not a port number (1-65535, or 0 for none)", p)
		}
		ip := pm.GetHostIp()
		if ip != "" {
			a, err := netip.ParseAddr(ip)
			if err != nil {
				return invalidField(f+".host_ip", "%s is not an IP address", short(ip))
			}
			ip = a.String()
		}
		if pm.GetHostPort() == 0 {
			continue
		}
		k := hostKey{ip: ip, port: pm.GetHostPort(), proto: pm.GetProtocol()}
		if j, dup := seen[k]; dup {
			return invalidField(f, "host port %d/%s on %q is already mapped by %s", k.port, k.proto, k.ip, fieldIndex(field, j))
		}
		seen[k] = i
	}
	return nil
}

// checkCgroupParent: cgroupfs style (or a systemd slice name) that stays
// under the cgroup root.
func checkCgroupParent(field, p string) error {
	if p == "" {
		return nil
	}
	if err := checkNoNUL(field, p); err != nil {
		return err
	}
	if len(p) > maxPathLen {
		return invalidField(field, "is %d bytes long, at most %d are allowed", len(p), maxPathLen)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return invalidField(field, "%s must not contain \"..\"", short(p))
		}
	}
	if strings.ContainsAny(p, "\n:") {
		return invalidField(field, "%s contains a newline or ':'", short(p))
	}
	return nil
}

// sysctlSegment is one component of a sysctl name (kubelet's syntax, with
// upper case allowed for interface names).
var sysctlSegment = regexp.MustCompile(`^[A-Za-z0-9]([-_A-Za-z0-9]*[A-Za-z0-9])?$`)

// ipcSysctls are the kernel.* sysctls of the IPC namespace (as runc).
var ipcSysctls = map[string]bool{
	"kernel.msgmax": true, "kernel.msgmnb": true, "kernel.msgmni": true, "kernel.sem": true,
	"kernel.shmall": true, "kernel.shmmax": true, "kernel.shmmni": true, "kernel.shm_rmid_forced": true,
}

// checkSysctl checks a pod sysctl: the kernel's name syntax (segments
// separated by '.' or '/'), a value on one line, and a name of a namespace
// the pod owns (runc refuses the others).
func checkSysctl(field, name, value string, hostNet, hostIPC bool) error {
	if name == "" || len(name) > maxSysctlNameLen {
		return invalidField(field, "sysctl name must be 1-%d bytes long", maxSysctlNameLen)
	}
	for _, seg := range strings.FieldsFunc(name, func(r rune) bool { return r == '.' || r == '/' }) {
		if !sysctlSegment.MatchString(seg) {
			return invalidField(field, "%s is not a valid sysctl name", short(name))
		}
	}
	if strings.HasPrefix(name, ".") || strings.HasPrefix(name, "/") || strings.HasSuffix(name, ".") ||
		strings.HasSuffix(name, "/") || strings.Contains(name, "..") || strings.Contains(name, "//") {
		return invalidField(field, "%s is not a valid sysctl name", short(name))
	}
	if strings.ContainsAny(value, "\x00\n\r") {
		return invalidField(field, "the value %s must be on one line", short(value))
	}
	// kubelet sends dots; accept the slash form the kernel also knows.
	dotted := name
	if strings.Contains(name, "/") {
		dotted = strings.Map(func(r rune) rune {
			switch r {
			case '/':
				return '.'
			case '.':
				return '/'
			}
			return r
		}, name)
	}
	switch {
	case ipcSysctls[dotted] || strings.HasPrefix(dotted, "fs.mqueue."):
		if hostIPC {
			return invalidField(field, "sysctl %s is not allowed with the host's IPC namespace", short(name))
		}
	case strings.HasPrefix(dotted, "net."):
		if hostNet {
			return invalidField(field, "sysctl %s is not allowed with the host's network namespace", short(name))
		}
	case dotted == "kernel.hostname" || dotted == "kernel.domainname":
		if hostNet {
			return invalidField(field, "sysctl %s is not allowed with the host's UTS namespace", short(name))
		}
	default:
		return invalidField(field, "sysctl %s is not namespaced, so not settable in a pod", short(name))
	}
	return nil
}

// checkNamespaceOptions: TARGET needs a target ID and is only for a
// container's PID namespace; a user namespace is POD or NODE.
func checkNamespaceOptions(field string, ns *runtimeapi.NamespaceOption, sandbox bool) error {
	if ns.GetNetwork() == runtimeapi.NamespaceMode_TARGET {
		return invalidField(field+".network", "TARGET is not supported")
	}
	if ns.GetIpc() == runtimeapi.NamespaceMode_TARGET {
		return invalidField(field+".ipc", "TARGET is not supported")
	}
	if ns.GetPid() == runtimeapi.NamespaceMode_TARGET {
		if sandbox {
			return invalidField(field+".pid", "TARGET is only valid for a container")
		}
		if ns.GetTargetId() == "" {
			return invalidField(field+".target_id", "is required with PID namespace mode TARGET")
		}
	}
	if u := ns.GetUsernsOptions(); u != nil {
		if m := u.GetMode(); m != runtimeapi.NamespaceMode_POD && m != runtimeapi.NamespaceMode_NODE {
			return invalidField(field+".userns_options.mode", "%s is not supported (POD or NODE)", m)
		}
	}
	return nil
}

// checkUser: ids in range, only one of run_as_user and run_as_username, and
// run_as_group only with one of them (api.proto: "the runtime MUST error").
func checkUser(field string, uid, gid *runtimeapi.Int64Value, username string) error {
	if uid != nil && username != "" {
		return invalidField(field, "run_as_user and run_as_username are mutually exclusive")
	}
	if uid != nil && (uid.GetValue() < 0 || uid.GetValue() > math.MaxInt32) {
		return invalidField(field+".run_as_user", "%d is out of range (0-%d)", uid.GetValue(), math.MaxInt32)
	}
	if gid != nil {
		if gid.GetValue() < 0 || gid.GetValue() > math.MaxInt32 {
			return invalidField(field+".run_as_group", "%d is out of range (0-%d)", gid.GetValue(), math.MaxInt32)
		}
		if uid == nil && username == "" {
			return invalidField(field+".run_as_group", "is only valid with run_as_user or run_as_username")
		}
	}
	if username != "" {
		if strings.ContainsAny(username, ":/\x00\n") || len(username) > maxNameLen {
			return invalidField(field+".run_as_username", "%s is not a user name", short(username))
		}
	}
	return nil
}

func checkGroups(field string, groups []int64) error {
	for i, g := range groups {
		if g < 0 || g > math.MaxUint32-1 {
			return invalidField(fieldIndex(field, i), "%d is out of range", g)
		}
	}
	return nil
}

func checkProfile(field string, p *runtimeapi.SecurityProfile) error {
	if p == nil {
		return nil
	}
	if p.GetProfileType() == runtimeapi.SecurityProfile_Localhost {
		if p.GetLocalhostRef() == "" {
			return invalidField(field+".localhost_ref", "is required with profile type Localhost")
		}
		return checkNoNUL(field+".localhost_ref", p.GetLocalhostRef())
	}
	if p.GetLocalhostRef() != "" {
		return invalidField(field+".localhost_ref", "must only be set with profile type Localhost")
	}
	return nil
}

// checkSeccomp checks the seccomp profile and the deprecated
// seccomp_profile_path ("runtime/default", "unconfined" or
// "localhost/<path>"): a Localhost profile is an absolute path (api.proto:
// "it must be an absolute path to the seccomp profile"); a relative one
// would be read relative to the daemon's working directory.
func checkSeccomp(field string, p *runtimeapi.SecurityProfile, legacy string) error {
	if err := checkProfile(field+".seccomp", p); err != nil {
		return err
	}
	if p != nil {
		if p.GetProfileType() == runtimeapi.SecurityProfile_Localhost {
			return checkAbsPath(field+".seccomp.localhost_ref", strings.TrimPrefix(p.GetLocalhostRef(), localhostProfilePrefix), true)
		}
		return nil
	}
	switch legacy {
	case "", "runtime/default", "docker/default", "unconfined":
		return nil
	}
	if !strings.HasPrefix(legacy, localhostProfilePrefix) {
		return invalidField(field+".seccomp_profile_path", "%s is not runtime/default, unconfined or localhost/<path>", short(legacy))
	}
	return checkAbsPath(field+".seccomp_profile_path", strings.TrimPrefix(legacy, localhostProfilePrefix), true)
}

const localhostProfilePrefix = "localhost/"

// seccompFile returns the file of a Localhost seccomp profile ("" for none).
func seccompFile(p *runtimeapi.SecurityProfile, legacy string) string {
	if p != nil {
		if p.GetProfileType() != runtimeapi.SecurityProfile_Localhost {
			return ""
		}
		return strings.TrimPrefix(p.GetLocalhostRef(), localhostProfilePrefix)
	}
	if strings.HasPrefix(legacy, localhostProfilePrefix) {
		return strings.TrimPrefix(legacy, localhostProfilePrefix)
	}
	return ""
}

// checkSeccompFile: a Localhost seccomp profile is read whole when the spec
// is built; it must be a regular file (not /dev/zero or a FIFO, which would
// make the read never end). A missing file is left to the spec generator,
// which reports it.
func checkSeccompFile(field, path string) error {
	if path == "" {
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil
	}
	if !fi.Mode().IsRegular() {
		return invalidField(field, "seccomp profile %s is not a regular file", short(path))
	}
	return nil
}

// checkResources checks cgroup resources: 0 always means "not set"; the
// other values must be ones the kernel takes, so that runc does not fail.
func checkResources(field string, r *runtimeapi.LinuxContainerResources) error {
	if r == nil {
		return nil
	}
	if p := r.GetCpuPeriod(); p != 0 && (p < minCPUPeriod || p > maxCPUPeriod) {
		return invalidField(field+".cpu_period", "%d is out of range (0 or %d-%d)", p, minCPUPeriod, maxCPUPeriod)
	}
	if q := r.GetCpuQuota(); q != 0 && q != -1 && q < minCPUQuota {
		return invalidField(field+".cpu_quota", "%d is out of range (-1, 0 or at least %d)", q, minCPUQuota)
	}
	if s := r.GetCpuShares(); s != 0 && (s < minCPUShares || s > maxCPUShares) {
		return invalidField(field+".cpu_shares", "%d is out of range (0 or %d-%d)", s, minCPUShares, maxCPUShares)
	}
	limit := r.GetMemoryLimitInBytes()
	if limit < 0 {
		return invalidField(field+".memory_limit_in_bytes", "%d is negative", limit)
	}
	swap := r.GetMemorySwapLimitInBytes()
	if swap < -1 {
		return invalidField(field+".memory_swap_limit_in_bytes", "%d is out of range (-1 for unlimited, or at least 0)", swap)
	}
	if swap > 0 && limit > 0 && swap < limit {
		return invalidField(field+".memory_swap_limit_in_bytes", "%d is less than memory_limit_in_bytes %d", swap, limit)
	}
	if a := r.GetOomScoreAdj(); a < -1000 || a > 1000 {
		return invalidField(field+".oom_score_adj", "%d is out of range (-1000-1000)", a)
	}
	if err := checkCPUSet(field+".cpuset_cpus", r.GetCpusetCpus()); err != nil {
		return err
	}
	if err := checkCPUSet(field+".cpuset_mems", r.GetCpusetMems()); err != nil {
		return err
	}
	for i, h := range r.GetHugepageLimits() {
		if !hugepageSize.MatchString(h.GetPageSize()) {
			return invalidField(fieldIndex(field+".hugepage_limits", i)+".page_size", "%s is not a page size like 2MB or 1GB", short(h.GetPageSize()))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(r.GetUnified())) {
		f := fieldKey(field+".unified", k)
		if k == "" || k == "." || k == ".." || strings.ContainsAny(k, "/\x00") || !strings.Contains(k, ".") {
			return invalidField(f, "%s is not a cgroup v2 file name", short(k))
		}
		// The core interface files move or kill processes (cgroup.procs,
		// cgroup.kill) or reshape the tree: not resources.
		if strings.HasPrefix(k, "cgroup.") {
			return invalidField(f, "%s is a cgroup core file, not a resource", short(k))
		}
		if err := checkNoNUL(f, r.GetUnified()[k]); err != nil {
			return err
		}
	}
	return nil
}

// checkMemoryLimit checks that a container's memory limit, when set, is one
// runc can apply (minMemoryLimit).
func checkMemoryLimit(field string, r *runtimeapi.LinuxContainerResources) error {
	if l := r.GetMemoryLimitInBytes(); l > 0 && l < minMemoryLimit {
		return invalidField(field+".memory_limit_in_bytes", "%d is below the minimum of %d bytes (6 MiB; 0 for unlimited)", l, minMemoryLimit)
	}
	return nil
}

var hugepageSize = regexp.MustCompile(`^[1-9][0-9]*[KMGTPE]?B$`)

// checkCPUSet checks the kernel's list format: "0-3,5,7-8".
func checkCPUSet(field, s string) error {
	if s == "" {
		return nil
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.ParseUint(lo, 10, 16)
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.ParseUint(hi, 10, 16)
		}
		if err1 != nil || err2 != nil || b < a {
			return invalidField(field, "%s is not a list like 0-3,5", short(s))
		}
	}
	return nil
}

func checkTimeout(field string, t int64) error {
	if t < 0 || t > maxTimeoutSeconds {
		return invalidField(field, "%d is out of range (0-%d seconds)", t, maxTimeoutSeconds)
	}
	return nil
}

func checkCmd(field string, cmd []string) error {
	if len(cmd) == 0 {
		return invalidField(field, "is required")
	}
	if cmd[0] == "" {
		return invalidField(fieldIndex(field, 0), "is empty: the command to run is required")
	}
	for i, a := range cmd {
		if err := checkNoNUL(fieldIndex(field, i), a); err != nil {
			return err
		}
	}
	return nil
}

// checkStreams: api.proto "One of `stdin`, `stdout`, or `stderr` MUST be
// true" and "If `tty` is true, `stderr` MUST be false".
func checkStreams(stdin, stdout, stderr, tty bool) error {
	if !stdin && !stdout && !stderr {
		return invalidField("stdin, stdout, stderr", "one of them must be set")
	}
	if tty && stderr {
		return invalidField("stderr", "must be false with tty")
	}
	return nil
}

// checkContainerConfig checks a container's config.
func checkContainerConfig(field string, cfg *runtimeapi.ContainerConfig) error {
	if cfg == nil {
		return invalidField(field, "is required")
	}
	if cfg.GetMetadata() == nil {
		return invalidField(field+".metadata", "is required")
	}
	if err := checkName(field+".metadata.name", cfg.GetMetadata().GetName(), true); err != nil {
		return err
	}
	if cfg.GetImage().GetImage() == "" {
		return invalidField(field+".image.image", "is required")
	}
	if err := checkNoNUL(field+".image.image", cfg.GetImage().GetImage()); err != nil {
		return err
	}
	if lp := cfg.GetLogPath(); lp != "" {
		if err := checkNoNUL(field+".log_path", lp); err != nil {
			return err
		}
		if !filepath.IsLocal(lp) {
			return invalidField(field+".log_path", "%s must be a relative path inside the pod's log_directory", short(lp))
		}
	}
	for _, l := range []struct {
		name string
		v    []string
	}{{"command", cfg.GetCommand()}, {"args", cfg.GetArgs()}} {
		for i, a := range l.v {
			if err := checkNoNUL(fieldIndex(field+"."+l.name, i), a); err != nil {
				return err
			}
		}
	}
	if err := checkAbsPath(field+".working_dir", cfg.GetWorkingDir(), false); err != nil {
		return err
	}
	for i, e := range cfg.GetEnvs() {
		f := fieldIndex(field+".envs", i)
		if e.GetKey() == "" || strings.ContainsAny(e.GetKey(), "=\x00") {
			return invalidField(f+".key", "%s is not an environment variable name", short(e.GetKey()))
		}
		if err := checkNoNUL(f+".value", string(e.GetValue())); err != nil {
			return err
		}
	}
	for i, m := range cfg.GetMounts() {
		if err := checkMount(fieldIndex(field+".mounts", i), m); err != nil {
			return err
		}
	}
	for i, d := range cfg.GetDevices() {
		f := fieldIndex(field+".devices", i)
		if err := checkAbsPath(f+".container_path", d.GetContainerPath(), true); err != nil {
			return err
		}
		if err := checkAbsPath(f+".host_path", d.GetHostPath(), true); err != nil {
			return err
		}
		if p := d.GetPermissions(); strings.Trim(p, "rwm") != "" {
			return invalidField(f+".permissions", "%s is not a combination of r, w and m", short(p))
		}
	}
	for i, d := range cfg.GetCDIDevices() {
		if d.GetName() == "" {
			return invalidField(fieldIndex(field+".CDI_devices", i)+".name", "is required")
		}
	}

	lf := field + ".linux"
	if err := checkResources(lf+".resources", cfg.GetLinux().GetResources()); err != nil {
		return err
	}
	if err := checkMemoryLimit(lf+".resources", cfg.GetLinux().GetResources()); err != nil {
		return err
	}
	sc := cfg.GetLinux().GetSecurityContext()
	scf := lf + ".security_context"
	if err := checkNamespaceOptions(scf+".namespace_options", sc.GetNamespaceOptions(), false); err != nil {
		return err
	}
	if err := checkUser(scf, sc.GetRunAsUser(), sc.GetRunAsGroup(), sc.GetRunAsUsername()); err != nil {
		return err
	}
	if err := checkGroups(scf+".supplemental_groups", sc.GetSupplementalGroups()); err != nil {
		return err
	}
	if err := checkCapabilities(scf+".capabilities", sc.GetCapabilities()); err != nil {
		return err
	}
	for _, l := range []struct {
		name string
		v    []string
	}{{"masked_paths", sc.GetMaskedPaths()}, {"readonly_paths", sc.GetReadonlyPaths()}} {
		for i, p := range l.v {
			if err := checkAbsPath(fieldIndex(scf+"."+l.name, i), p, true); err != nil {
				return err
			}
		}
	}
	if err := checkSeccomp(scf, sc.GetSeccomp(), sc.GetSeccompProfilePath()); err != nil { //nolint:staticcheck // deprecated field still honoured
		return err
	}
	return checkProfile(scf+".apparmor", sc.GetApparmor())
}

// checkMount: an absolute container path; a host path that is absolute
// (a relative one would be created under the daemon's working directory),
// or an image mount (no host path, read-only); recursive read-only only
// with read-only and private propagation (api.proto).
func checkMount(field string, m *runtimeapi.Mount) error {
	if m == nil {
		return invalidField(field, "is empty")
	}
	if err := checkAbsPath(field+".container_path", m.GetContainerPath(), true); err != nil {
		return err
	}
	if m.GetImage() != nil {
		if m.GetImage().GetImage() == "" {
			return invalidField(field+".image.image", "is required for an image mount")
		}
		if m.GetHostPath() != "" {
			return invalidField(field+".host_path", "must be empty for an image mount")
		}
		if !m.GetReadonly() {
			return invalidField(field+".readonly", "an image mount must be read-only")
		}
		if err := checkNoNUL(field+".image_sub_path", m.GetImageSubPath()); err != nil {
			return err
		}
	} else {
		if err := checkAbsPath(field+".host_path", m.GetHostPath(), true); err != nil {
			return err
		}
		if m.GetImageSubPath() != "" {
			return invalidField(field+".image_sub_path", "is only valid for an image mount")
		}
	}
	if m.GetRecursiveReadOnly() {
		if !m.GetReadonly() {
			return invalidField(field+".recursive_read_only", "needs readonly")
		}
		if m.GetPropagation() != runtimeapi.MountPropagation_PROPAGATION_PRIVATE {
			return invalidField(field+".recursive_read_only", "needs private propagation, not %s", m.GetPropagation())
		}
	}
	for i, o := range m.GetMountOptions() {
		if o == "" || strings.ContainsAny(o, ",\x00") {
			return invalidField(fieldIndex(field+".mount_options", i), "%s is not a mount option", short(o))
		}
	}
	return nil
}

// knownCaps are the capability names of the newest kernel containerd knows.
var knownCaps = func() map[string]bool {
	m := map[string]bool{}
	for _, c := range cap.Known() {
		m[c] = true
	}
	return m
}()

// checkCapabilities: each name is a known capability, with or without the
// CAP_ prefix, in any case (kubelet passes the pod spec's names through),
// or "ALL".
func checkCapabilities(field string, c *runtimeapi.Capability) error {
	for _, l := range []struct {
		name string
		v    []string
	}{{"add_capabilities", c.GetAddCapabilities()}, {"drop_capabilities", c.GetDropCapabilities()}, {"add_ambient_capabilities", c.GetAddAmbientCapabilities()}} {
		for i, n := range l.v {
			u := strings.ToUpper(n)
			if u == "ALL" {
				continue
			}
			if !strings.HasPrefix(u, "CAP_") {
				u = "CAP_" + u
			}
			if !knownCaps[u] {
				return invalidField(fieldIndex(field+"."+l.name, i), "unknown capability %s", short(n))
			}
		}
	}
	return nil
}
