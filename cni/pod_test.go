package cni

import (
	"math"
	"net"
	"testing"

	gocni "github.com/containerd/go-cni"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
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
