package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"reflect"
	"sort"
	"strings"

	"github.com/containerd/errdefs"
	gocni "github.com/containerd/go-cni"
	"k8s.io/apimachinery/pkg/api/resource"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
)

// PodAnnotationsCapability passes the pod's annotations to plugins that ask for them.
const PodAnnotationsCapability = "io.kubernetes.cri.pod-annotations"

const (
	ingressBandwidthAnnotation = "kubernetes.io/ingress-bandwidth"
	egressBandwidthAnnotation  = "kubernetes.io/egress-bandwidth"
)

// Capability argument names (https://www.cni.dev/docs/conventions/).
const (
	capPortMappings = "portMappings"
	capBandwidth    = "bandwidth"
	capDNS          = "dns"
	capIPRanges     = "ipRanges"
	capCgroupPath   = "cgroupPath"
)

// PodArgs are the CNI arguments of a pod: CNI_ARGS labels and capability
// arguments (runtimeConfig) by name. The same arguments must be passed to
// ADD and DEL (host-local IPAM releases by container ID, portmap removes its
// rules only when it is given the mappings).
type PodArgs struct {
	Labels       map[string]string
	Capabilities map[string]any
	// LoopbackPlugin: the pod's lo may have been set up by the loopback
	// plugin (a pod made before lo was brought up in-process, or whose ADD
	// result is unknown): DEL runs it too, so that its cached result goes.
	LoopbackPlugin bool
}

// NewPodArgs builds the CNI arguments of a pod.
func NewPodArgs(id string, cfg *runtimeapi.PodSandboxConfig, podCIDRs []string) (PodArgs, error) {
	a := PodArgs{
		Labels: map[string]string{
			"K8S_POD_NAMESPACE":          cfg.GetMetadata().GetNamespace(),
			"K8S_POD_NAME":               cfg.GetMetadata().GetName(),
			"K8S_POD_INFRA_CONTAINER_ID": id,
			"K8S_POD_UID":                cfg.GetMetadata().GetUid(),
			"IgnoreUnknown":              "1",
		},
		Capabilities: map[string]any{PodAnnotationsCapability: cfg.GetAnnotations()},
	}
	if pm := PortMappings(cfg.GetPortMappings()); len(pm) > 0 {
		a.Capabilities[capPortMappings] = pm
	}
	bw, err := Bandwidth(cfg.GetAnnotations())
	if err != nil {
		return PodArgs{}, err
	}
	if bw != nil {
		a.Capabilities[capBandwidth] = *bw
	}
	if dns := cfg.GetDnsConfig(); dns != nil {
		a.Capabilities[capDNS] = gocni.DNS{Servers: dns.GetServers(), Searches: dns.GetSearches(), Options: dns.GetOptions()}
	}
	if len(podCIDRs) > 0 {
		var ranges []gocni.IPRanges
		for _, c := range podCIDRs {
			ranges = append(ranges, gocni.IPRanges{Subnet: c})
		}
		a.Capabilities[capIPRanges] = ranges
	}
	if cg := cfg.GetLinux().GetCgroupParent(); cg != "" {
		a.Capabilities[capCgroupPath] = cg
	}
	return a, nil
}

// Opts are the arguments as go-cni namespace options.
func (a PodArgs) Opts() []gocni.NamespaceOpts {
	var opts []gocni.NamespaceOpts
	if len(a.Labels) > 0 {
		opts = append(opts, gocni.WithLabels(a.Labels))
	}
	names := make([]string, 0, len(a.Capabilities))
	for n := range a.Capabilities {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		opts = append(opts, gocni.WithCapability(n, a.Capabilities[n]))
	}
	return opts
}

// PodOptions builds the CNI arguments of a pod as go-cni options (see NewPodArgs).
func PodOptions(id string, cfg *runtimeapi.PodSandboxConfig, podCIDRs []string) ([]gocni.NamespaceOpts, error) {
	a, err := NewPodArgs(id, cfg, podCIDRs)
	if err != nil {
		return nil, err
	}
	return a.Opts(), nil
}

// with returns a copy of a whose capabilities are filtered by keep, which
// may also replace a value.
func (a PodArgs) with(keep func(name string, v any) (any, bool)) PodArgs {
	out := PodArgs{Labels: a.Labels, Capabilities: map[string]any{}, LoopbackPlugin: a.LoopbackPlugin}
	for n, v := range a.Capabilities {
		if nv, ok := keep(n, v); ok {
			out.Capabilities[n] = nv
		}
	}
	return out
}

// sanitised drops what no reference plugin needs to undo its ADD and what a
// plugin may reject: bandwidth (the ifb device is found by container ID), DNS,
// and the port mappings portmap refuses (a port outside 1-65535, an unknown
// protocol), which make it fail before it sets anything up. Valid port
// mappings stay: without them portmap's DEL does nothing and its DNAT rules
// would outlive the pod and point at an address given to the next one.
func (a PodArgs) sanitised() PodArgs {
	return a.with(func(n string, v any) (any, bool) {
		switch n {
		case capBandwidth, capDNS:
			return nil, false
		case capPortMappings:
			pms, _ := v.([]gocni.PortMapping)
			var valid []gocni.PortMapping
			for _, pm := range pms {
				if validPortMapping(pm) {
					valid = append(valid, pm)
				}
			}
			return valid, len(valid) > 0
		}
		return v, true
	})
}

// minimal keeps only the node's pod CIDRs (host-local may need them to find
// its range): every argument that came with the pod is dropped.
func (a PodArgs) minimal() PodArgs {
	return a.with(func(n string, v any) (any, bool) { return v, n == capIPRanges })
}

func validPortMapping(pm gocni.PortMapping) bool {
	okPort := func(p int32) bool { return p >= 1 && p <= math.MaxUint16 }
	if !okPort(pm.ContainerPort) || !okPort(pm.HostPort) {
		return false
	}
	switch pm.Protocol {
	case "tcp", "udp", "sctp":
	default:
		return false
	}
	return pm.HostIP == "" || net.ParseIP(pm.HostIP) != nil
}

// Remover runs CNI DEL.
type Remover interface {
	Remove(ctx context.Context, id, path string, args PodArgs) error
}

// TeardownPod runs CNI DEL for a pod so that its address is released even
// when a plugin fails DEL on the arguments it failed ADD with (portmap with a
// container port of 0 fails both, and the plugins before it in the chain,
// host-local included, then never see the DEL):
//
//  1. DEL with the pod's arguments, as ADD had them;
//  2. if that fails, DEL with the sanitised arguments (see sanitised), when
//     they differ;
//  3. if that fails too and ADD never succeeded (addSucceeded false: the
//     arguments were refused at ADD), DEL with none of the pod's capability
//     arguments, when they differ. After a successful ADD this is not done:
//     portmap would skip removing its rules.
//
// The error of the last attempt is returned when every attempt fails; the
// caller keeps the sandbox NOTREADY and tries again later.
func TeardownPod(ctx context.Context, r Remover, id, path string, args PodArgs, addSucceeded bool) error {
	attempts := []PodArgs{args, args.sanitised()}
	if !addSucceeded {
		attempts = append(attempts, args.minimal())
	}
	var errs []error
	for i, a := range attempts {
		if i > 0 {
			if reflect.DeepEqual(a.Capabilities, attempts[i-1].Capabilities) {
				continue
			}
			if ctx.Err() != nil {
				break
			}
			klog.FromContext(ctx).Info("CNI DEL failed with the pod's arguments; retrying with fewer capability arguments",
				"podSandboxID", id, "capabilities", capabilityNames(a), "err", errs[len(errs)-1])
		}
		err := r.Remove(ctx, id, path, a)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return fmt.Errorf("CNI DEL failed %d times, also with fewer capability arguments: %w", len(errs), errors.Join(errs...))
}

func capabilityNames(a PodArgs) []string {
	names := make([]string, 0, len(a.Capabilities))
	for n := range a.Capabilities {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// PortMappings converts CRI port mappings; mappings without a host port are skipped.
func PortMappings(in []*runtimeapi.PortMapping) []gocni.PortMapping {
	var out []gocni.PortMapping
	for _, m := range in {
		if m.GetHostPort() <= 0 {
			continue
		}
		out = append(out, gocni.PortMapping{
			HostPort:      m.GetHostPort(),
			ContainerPort: m.GetContainerPort(),
			Protocol:      strings.ToLower(m.GetProtocol().String()),
			HostIP:        m.GetHostIp(),
		})
	}
	return out
}

// Bandwidth reads the kubernetes.io/{ingress,egress}-bandwidth annotations.
func Bandwidth(annotations map[string]string) (*gocni.BandWidth, error) {
	parse := func(key string) (uint64, bool, error) {
		v, ok := annotations[key]
		if !ok {
			return 0, false, nil
		}
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return 0, false, fmt.Errorf("annotation %s=%q: %w: %v", key, v, errdefs.ErrInvalidArgument, err)
		}
		if q.Value() < 1000 || q.Cmp(resource.MustParse("1P")) > 0 {
			return 0, false, fmt.Errorf("annotation %s=%q: must be between 1k and 1P: %w", key, v, errdefs.ErrInvalidArgument)
		}
		return uint64(q.Value()), true, nil
	}
	in, hasIn, err := parse(ingressBandwidthAnnotation)
	if err != nil {
		return nil, err
	}
	out, hasOut, err := parse(egressBandwidthAnnotation)
	if err != nil {
		return nil, err
	}
	if !hasIn && !hasOut {
		return nil, nil
	}
	bw := &gocni.BandWidth{}
	if hasIn {
		bw.IngressRate, bw.IngressBurst = in, math.MaxUint32
	}
	if hasOut {
		bw.EgressRate, bw.EgressBurst = out, math.MaxUint32
	}
	return bw, nil
}

// DefaultInterface is the pod's primary interface.
const DefaultInterface = "eth0"

// PodIPs picks the pod IP (IPv4 first) and the additional IPs from a CNI result.
func PodIPs(res *gocni.Result) (string, []string, error) {
	if res == nil {
		return "", nil, fmt.Errorf("empty CNI result")
	}
	cfg, ok := res.Interfaces[DefaultInterface]
	if !ok || len(cfg.IPConfigs) == 0 {
		return "", nil, fmt.Errorf("CNI result has no IP on %s", DefaultInterface)
	}
	var v4, v6 []string
	for _, c := range cfg.IPConfigs {
		if c.IP == nil {
			continue
		}
		if c.IP.To4() != nil {
			v4 = append(v4, c.IP.String())
		} else {
			v6 = append(v6, net.IP(c.IP).String())
		}
	}
	all := append(v4, v6...)
	if len(all) == 0 {
		return "", nil, fmt.Errorf("CNI result has no IP on %s", DefaultInterface)
	}
	return all[0], all[1:], nil
}

// LoopbackInResult reports whether the loopback plugin may have set up the
// lo of a pod, from its recorded ADD result (go-cni's Result as JSON): an
// ADD that ran the plugin recorded an lo interface. An empty or unreadable
// record (the ADD failed, or the result is lost) counts as one with it.
func LoopbackInResult(result []byte) bool {
	if len(result) == 0 {
		return true
	}
	var r struct{ Interfaces map[string]json.RawMessage }
	if err := json.Unmarshal(result, &r); err != nil {
		return true
	}
	_, ok := r.Interfaces["lo"]
	return ok
}
