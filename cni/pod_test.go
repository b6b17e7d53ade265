package cni

import (
	"context"
	"math"
	"net"
	"testing"

	gocni "github.com/containerd/go-cni"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/cni/cnitest"
)

func TestPortMappings(t *testing.T) {
	got := PortMappings([]*runtimeapi.PortMapping{
		{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 80, HostPort: 8080, HostIp: "127.0.0.1"},
		{Protocol: runtimeapi.Protocol_UDP, ContainerPort: 53, HostPort: 5353},
		{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 443}, // no host port: skipped
	})
	want := []gocni.PortMapping{
		{HostPort: 8080, ContainerPort: 80, Protocol: "tcp", HostIP: "127.0.0.1"},
		{HostPort: 5353, ContainerPort: 53, Protocol: "udp"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("[%d] = %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestBandwidth(t *testing.T) {
	for _, tc := range []struct {
		name    string
		ann     map[string]string
		want    *gocni.BandWidth
		wantErr bool
	}{
		{"none", nil, nil, false},
		{"ingress", map[string]string{ingressBandwidthAnnotation: "10M"}, &gocni.BandWidth{IngressRate: 10_000_000, IngressBurst: math.MaxUint32}, false},
		{"both", map[string]string{ingressBandwidthAnnotation: "1k", egressBandwidthAnnotation: "2Mi"},
			&gocni.BandWidth{IngressRate: 1000, IngressBurst: math.MaxUint32, EgressRate: 2 << 20, EgressBurst: math.MaxUint32}, false},
		{"bad unit", map[string]string{egressBandwidthAnnotation: "10 furlongs"}, nil, true},
		{"too small", map[string]string{egressBandwidthAnnotation: "10"}, nil, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Bandwidth(tc.ann)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v", err)
			}
			if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestPodIPs(t *testing.T) {
	res := &gocni.Result{Interfaces: map[string]*gocni.Config{
		"eth0": {IPConfigs: []*gocni.IPConfig{{IP: net.ParseIP("fd00::5")}, {IP: net.ParseIP("10.1.0.5")}}},
	}}
	ip, extra, err := PodIPs(res)
	if err != nil || ip != "10.1.0.5" || len(extra) != 1 || extra[0] != "fd00::5" {
		t.Fatalf("PodIPs = %q %v %v", ip, extra, err)
	}
	if _, _, err := PodIPs(&gocni.Result{Interfaces: map[string]*gocni.Config{}}); err == nil {
		t.Fatal("expected error for missing eth0")
	}
}

func TestPodOptionsBadBandwidth(t *testing.T) {
	_, err := PodOptions("id", &runtimeapi.PodSandboxConfig{Annotations: map[string]string{ingressBandwidthAnnotation: "x"}}, nil)
	if err == nil {
		t.Fatal("expected error")
	}
}

func TestTeardownPod(t *testing.T) {
	valid := &runtimeapi.PortMapping{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 80, HostPort: 8080}
	zero := &runtimeapi.PortMapping{Protocol: runtimeapi.Protocol_TCP, ContainerPort: 0, HostPort: 8081}
	for _, tc := range []struct {
		name         string
		ports        []*runtimeapi.PortMapping
		failAdd      bool     // ADD refuses the capability arguments
		fail         []string // control files set before DEL
		wantReleased bool
	}{
		{"DEL works", []*runtimeapi.PortMapping{valid}, false, nil, true},
		{"refused mappings after a failed ADD", []*runtimeapi.PortMapping{valid}, true, []string{cnitest.FailDelCaps}, true},
		// After a successful ADD, valid mappings are never dropped: portmap
		// would leave its rules behind. The caller keeps the sandbox.
		{"refused valid mappings after a successful ADD", []*runtimeapi.PortMapping{valid}, false, []string{cnitest.FailDelCaps}, false},
		{"invalid mapping after a successful ADD", []*runtimeapi.PortMapping{zero}, false, []string{cnitest.FailDelCaps}, true},
		{"DEL fails whatever the arguments", []*runtimeapi.PortMapping{valid}, true, []string{cnitest.FailDel}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, p := newTestManager(t)
			cfg := &runtimeapi.PodSandboxConfig{
				Metadata:     &runtimeapi.PodSandboxMetadata{Name: "web", Namespace: "default", Uid: "uid"},
				PortMappings: tc.ports,
			}
			args, err := NewPodArgs("pod", cfg, nil)
			if err != nil {
				t.Fatal(err)
			}
			p.Set(t, cnitest.FailAddCaps, tc.failAdd)
			_, err = m.Setup(context.Background(), "pod", "/var/run/netns/fake", args)
			if (err != nil) != tc.failAdd {
				t.Fatalf("ADD: %v", err)
			}
			if got := p.Allocations(t); len(got) != 1 {
				t.Fatalf("allocations after ADD: %v", got)
			}
			for _, f := range tc.fail {
				p.Set(t, f, true)
			}
			err = TeardownPod(context.Background(), m, "pod", "/var/run/netns/fake", args, !tc.failAdd)
			released := len(p.Allocations(t)) == 0
			if released != tc.wantReleased || (err == nil) != tc.wantReleased {
				t.Errorf("released %v, err %v; want released %v", released, err, tc.wantReleased)
			}
		})
	}
}

func TestPodArgsSanitised(t *testing.T) {
	a := PodArgs{Capabilities: map[string]any{
		capPortMappings: []gocni.PortMapping{
			{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"},
			{HostPort: 8081, ContainerPort: 0, Protocol: "tcp"},
			{HostPort: 8082, ContainerPort: 82, Protocol: "icmp"},
			{HostPort: 8083, ContainerPort: 83, Protocol: "udp", HostIP: "not-an-ip"},
		},
		capBandwidth:             gocni.BandWidth{IngressRate: 1000},
		capDNS:                   gocni.DNS{Servers: []string{"1.1.1.1"}},
		capIPRanges:              []gocni.IPRanges{{Subnet: "10.1.0.0/24"}},
		PodAnnotationsCapability: map[string]string{"a": "b"},
	}}
	s := a.sanitised()
	pms, _ := s.Capabilities[capPortMappings].([]gocni.PortMapping)
	if len(pms) != 1 || pms[0].ContainerPort != 80 {
		t.Errorf("sanitised port mappings %+v", pms)
	}
	for _, n := range []string{capBandwidth, capDNS} {
		if _, ok := s.Capabilities[n]; ok {
			t.Errorf("sanitised keeps %s", n)
		}
	}
	for _, n := range []string{capIPRanges, PodAnnotationsCapability} {
		if _, ok := s.Capabilities[n]; !ok {
			t.Errorf("sanitised drops %s", n)
		}
	}
	if got := capabilityNames(a.minimal()); len(got) != 1 || got[0] != capIPRanges {
		t.Errorf("minimal keeps %v", got)
	}
	if len(a.Capabilities) != 5 {
		t.Error("sanitised changed its receiver")
	}
}
