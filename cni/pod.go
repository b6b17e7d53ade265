package cni

import (
	"fmt"
	"math"
	"net"
	"strings"

	"github.com/containerd/errdefs"
	gocni "github.com/containerd/go-cni"
	"k8s.io/apimachinery/pkg/api/resource"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// PodAnnotationsCapability passes the pod's annotations to plugins that ask for them.
const PodAnnotationsCapability = "io.kubernetes.cri.pod-annotations"

const (
	ingressBandwidthAnnotation = "kubernetes.io/ingress-bandwidth"
	egressBandwidthAnnotation  = "kubernetes.io/egress-bandwidth"
)

// PodOptions builds the CNI arguments and capabilities of a pod. The same
// options must be passed to Setup and Remove (host-local IPAM releases by
// container ID, portmap removes its rules by the mappings).
func PodOptions(id string, cfg *runtimeapi.PodSandboxConfig, podCIDRs []string) ([]gocni.NamespaceOpts, error) {
	opts := []gocni.NamespaceOpts{
		gocni.WithLabels(map[string]string{
			"K8S_POD_NAMESPACE":          cfg.GetMetadata().GetNamespace(),
			"K8S_POD_NAME":               cfg.GetMetadata().GetName(),
			"K8S_POD_INFRA_CONTAINER_ID": id,
			"K8S_POD_UID":                cfg.GetMetadata().GetUid(),
			"IgnoreUnknown":              "1",
		}),
		gocni.WithCapability(PodAnnotationsCapability, cfg.GetAnnotations()),
	}
	if pm := PortMappings(cfg.GetPortMappings()); len(pm) > 0 {
		opts = append(opts, gocni.WithCapabilityPortMap(pm))
	}
	bw, err := Bandwidth(cfg.GetAnnotations())
	if err != nil {
		return nil, err
	}
	if bw != nil {
		opts = append(opts, gocni.WithCapabilityBandWidth(*bw))
	}
	if dns := cfg.GetDnsConfig(); dns != nil {
		opts = append(opts, gocni.WithCapabilityDNS(gocni.DNS{Servers: dns.GetServers(), Searches: dns.GetSearches(), Options: dns.GetOptions()}))
	}
	if len(podCIDRs) > 0 {
		var ranges []gocni.IPRanges
		for _, c := range podCIDRs {
			ranges = append(ranges, gocni.IPRanges{Subnet: c})
		}
		opts = append(opts, gocni.WithCapabilityIPRanges(ranges))
	}
	if cg := cfg.GetLinux().GetCgroupParent(); cg != "" {
		opts = append(opts, gocni.WithCapabilityCgroupPath(cg))
	}
	return opts, nil
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
