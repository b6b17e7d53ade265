package stats

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/pkg/netns"
	"github.com/containerd/errdefs"
	cnins "github.com/containernetworking/plugins/pkg/ns"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// DefaultInterface is the pod interface CNI plugins create; it is the CRI
// NetworkUsage.DefaultInterface when present.
const DefaultInterface = "eth0"

// InterfaceStats are the counters of one network interface (/proc/net/dev).
type InterfaceStats struct {
	Name                                    string
	RxBytes, RxPackets, RxErrors, RxDropped uint64
	TxBytes, TxPackets, TxErrors, TxDropped uint64
}

// ParseNetDev parses /proc/net/dev. Interfaces keep the file's order.
func ParseNetDev(r io.Reader) ([]InterfaceStats, error) {
	var out []InterfaceStats
	sc := bufio.NewScanner(r)
	line := 0
	for sc.Scan() {
		line++
		text := sc.Text()
		if line <= 2 && strings.Contains(text, "|") { // the two header lines
			continue
		}
		name, rest, ok := strings.Cut(text, ":")
		if !ok {
			if strings.TrimSpace(text) == "" {
				continue
			}
			return nil, fmt.Errorf("/proc/net/dev line %d: no interface name in %q", line, text)
		}
		f := strings.Fields(rest)
		if len(f) < 16 {
			return nil, fmt.Errorf("/proc/net/dev line %d: %d fields, want 16", line, len(f))
		}
		var v [16]uint64
		for i := range v {
			n, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				return nil, fmt.Errorf("/proc/net/dev line %d field %d: %w", line, i+1, err)
			}
			v[i] = n
		}
		out = append(out, InterfaceStats{
			Name:    strings.TrimSpace(name),
			RxBytes: v[0], RxPackets: v[1], RxErrors: v[2], RxDropped: v[3],
			TxBytes: v[8], TxPackets: v[9], TxErrors: v[10], TxDropped: v[11],
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading /proc/net/dev: %w", err)
	}
	return out, nil
}

// ReadNetDev reads the interface counters of a pod network namespace. It
// enters the namespace at netnsPath (the pinned netns of the sandbox) and,
// if that is not possible, reads /proc/<pid>/net/dev of a process inside
// it (the pause process). A namespace that is gone is errdefs.ErrNotFound.
func ReadNetDev(netnsPath string, pid uint32) ([]InterfaceStats, error) {
	var errs []error
	if netnsPath != "" {
		var data []byte
		err := netns.LoadNetNS(netnsPath).Do(func(cnins.NetNS) error {
			// /proc/self would name the thread group leader, which is in
			// another namespace: only this (locked) thread entered the pod's.
			var rerr error
			data, rerr = os.ReadFile("/proc/thread-self/net/dev")
			return rerr
		})
		if err == nil {
			return ParseNetDev(bytes.NewReader(data))
		}
		errs = append(errs, fmt.Errorf("netns %s: %w", netnsPath, err))
	}
	if pid > 0 {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/dev", pid))
		if err == nil {
			return ParseNetDev(bytes.NewReader(data))
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("no network namespace to read: %w", errdefs.ErrNotFound)
	}
	err := errors.Join(errs...)
	var nsGone cnins.NSPathNotExistErr
	if errors.As(err, &nsGone) || errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("reading pod network counters: %v: %w", err, errdefs.ErrNotFound)
	}
	return nil, fmt.Errorf("reading pod network counters: %w", err)
}

func ifaceUsage(i InterfaceStats) *runtimeapi.NetworkInterfaceUsage {
	return &runtimeapi.NetworkInterfaceUsage{
		Name:     i.Name,
		RxBytes:  u64(i.RxBytes),
		RxErrors: u64(i.RxErrors),
		TxBytes:  u64(i.TxBytes),
		TxErrors: u64(i.TxErrors),
	}
}

// PodInterfaces drops the loopback interface, which kubelet does not account.
func PodInterfaces(in []InterfaceStats) []InterfaceStats {
	out := make([]InterfaceStats, 0, len(in))
	for _, i := range in {
		if i.Name != "lo" {
			out = append(out, i)
		}
	}
	return out
}

// NetworkUsage converts the counters of a pod's interfaces (loopback is
// skipped) to CRI. The default interface is eth0, else the first one. No
// interface gives nil.
func NetworkUsage(ifaces []InterfaceStats, at time.Time) *runtimeapi.NetworkUsage {
	ifaces = PodInterfaces(ifaces)
	if len(ifaces) == 0 {
		return nil
	}
	n := &runtimeapi.NetworkUsage{Timestamp: at.UnixNano()}
	for _, i := range ifaces {
		u := ifaceUsage(i)
		n.Interfaces = append(n.Interfaces, u)
		if i.Name == DefaultInterface && n.DefaultInterface == nil {
			n.DefaultInterface = u
		}
	}
	if n.DefaultInterface == nil {
		n.DefaultInterface = n.Interfaces[0]
	}
	return n
}
