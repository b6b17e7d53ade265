package e2e

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/test/e2e/framework"
)

// callRecorder counts, per CRI RPC, the containerd calls (round trips) the
// daemon made while it ran (from cri_containerd_containerd_requests_total,
// by containerd method) and times it.
type callRecorder struct {
	t           *testing.T
	metricsAddr string
	rpcs        []string
	delta       map[string]map[string]float64
	times       map[string][]time.Duration
}

func newCallRecorder(t *testing.T, metricsAddr string, rpcs ...string) *callRecorder {
	r := &callRecorder{t: t, metricsAddr: metricsAddr, rpcs: rpcs, delta: map[string]map[string]float64{}, times: map[string][]time.Duration{}}
	for _, rpc := range rpcs {
		r.delta[rpc] = map[string]float64{}
	}
	return r
}

// step runs f, one call of rpc, with a call deadline.
func (r *callRecorder) step(rpc string, f func(ctx context.Context) error) {
	r.t.Helper()
	b := ctrdCalls(r.t, scrapeMetrics(r.t, r.metricsAddr))
	ctx, cancel := context.WithTimeout(context.Background(), framework.CallTimeout)
	defer cancel()
	t0 := time.Now()
	if err := f(ctx); err != nil {
		r.t.Fatalf("%s: %v", rpc, err)
	}
	r.times[rpc] = append(r.times[rpc], time.Since(t0))
	a := ctrdCalls(r.t, scrapeMetrics(r.t, r.metricsAddr))
	for k, v := range a {
		if d := v - b[k]; d > 0 {
			r.delta[rpc][k] += d
		}
	}
}

// report logs the calls per request of each RPC over n cycles, by
// containerd method, with the median time.
func (r *callRecorder) report(what string, n int) {
	var b strings.Builder
	for _, rpc := range r.rpcs {
		var methods []string
		total := 0.0
		for k, v := range r.delta[rpc] {
			methods = append(methods, k)
			total += v
		}
		sort.Strings(methods)
		ts := r.times[rpc]
		sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
		fmt.Fprintf(&b, "%s: %.1f containerd calls per request, median %v\n", rpc, total/float64(n), ts[len(ts)/2].Round(time.Microsecond))
		for _, k := range methods {
			fmt.Fprintf(&b, "  %-60s %5.1f\n", k, r.delta[rpc][k]/float64(n))
		}
	}
	r.t.Logf("containerd calls per %s RPC over %d cycles (event-monitor calls in the window included):\n%s", what, n, b.String())
	m := scrapeMetrics(r.t, r.metricsAddr)
	for _, line := range strings.Split(m, "\n") {
		for _, rpc := range r.rpcs {
			if strings.HasPrefix(line, `cri_containerd_containerd_calls_per_request_sum{method="`+rpc+`"}`) ||
				strings.HasPrefix(line, `cri_containerd_containerd_calls_per_request_count{method="`+rpc+`"}`) {
				r.t.Log(line)
			}
		}
	}
}

// callCycles is CRI_E2E_CTR_CALLS (cycles); the call-count tests skip
// without it.
func callCycles(t *testing.T) int {
	n, _ := strconv.Atoi(os.Getenv("CRI_E2E_CTR_CALLS"))
	if n <= 0 {
		t.Skip("set CRI_E2E_CTR_CALLS=N to run N lifecycle cycles")
	}
	return n
}

// TestContainerCallCounts reports the containerd calls (round trips) that
// each container RPC makes, by containerd method, and its median time, over
// N create/start/stop/remove cycles in one pod of a private daemon built
// from the tree (what critest -benchmark's container lifecycle does). It
// only reports: nothing is asserted about speed. It runs only with
// CRI_E2E_CTR_CALLS=N (cycles).
func TestContainerCallCounts(t *testing.T) {
	n := callCycles(t)
	metricsAddr := freeAddr(t)
	e := newCtrEnv(t, "--metrics-addr", metricsAddr)
	rc := e.rc()
	podID, podCfg := e.runPod("calls")
	r := newCallRecorder(t, metricsAddr, "CreateContainer", "StartContainer", "StopContainer", "RemoveContainer")
	for i := range n {
		cfg := framework.NewContainerConfig(fmt.Sprintf("c%d", i), framework.BusyboxImageRef, "sleep", "3600")
		var id string
		r.step("CreateContainer", func(ctx context.Context) error {
			resp, err := rc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg})
			id = resp.GetContainerId()
			return err
		})
		r.step("StartContainer", func(ctx context.Context) error {
			_, err := rc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id})
			return err
		})
		r.step("StopContainer", func(ctx context.Context) error {
			_, err := rc.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 0})
			return err
		})
		r.step("RemoveContainer", func(ctx context.Context) error {
			_, err := rc.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id})
			return err
		})
	}
	r.report("container", n)
}

// TestPodCallCounts is TestContainerCallCounts for pod sandboxes:
// RunPodSandbox, StopPodSandbox and RemovePodSandbox of N pods (kubelet's
// pod config, one after the other).
func TestPodCallCounts(t *testing.T) {
	n := callCycles(t)
	metricsAddr := freeAddr(t)
	e := newCtrEnv(t, "--metrics-addr", metricsAddr)
	rc := e.rc()
	e.runPod("warm-up") // the daemon's first pod pulls the pause image
	r := newCallRecorder(t, metricsAddr, "RunPodSandbox", "StopPodSandbox", "RemovePodSandbox")
	for i := range n {
		var id string
		r.step("RunPodSandbox", func(context.Context) error {
			id, _ = e.runPod(fmt.Sprintf("p%d", i))
			return nil
		})
		r.step("StopPodSandbox", func(ctx context.Context) error {
			_, err := rc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
			return err
		})
		r.step("RemovePodSandbox", func(ctx context.Context) error {
			_, err := rc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
			return err
		})
	}
	r.report("pod", n)
}
