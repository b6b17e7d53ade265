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

// TestContainerCallCounts reports the containerd calls (round trips) that
// each container RPC makes, by containerd method, and its median time, over
// N create/start/stop/remove cycles in one pod of a private daemon built
// from the tree (what critest -benchmark's container lifecycle does). It
// only reports: nothing is asserted about speed. It runs only with
// CRI_E2E_CTR_CALLS=N (cycles).
func TestContainerCallCounts(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("CRI_E2E_CTR_CALLS"))
	if n <= 0 {
		t.Skip("set CRI_E2E_CTR_CALLS=N to run N container lifecycle cycles")
	}
	metricsAddr := freeAddr(t)
	e := newCtrEnv(t, "--metrics-addr", metricsAddr)
	rc := e.rc()
	podID, podCfg := e.runPod("calls")
	ctx := context.Background()

	rpcs := []string{"CreateContainer", "StartContainer", "StopContainer", "RemoveContainer"}
	delta := map[string]map[string]float64{}
	times := map[string][]time.Duration{}
	for _, r := range rpcs {
		delta[r] = map[string]float64{}
	}
	step := func(rpc string, f func() error) {
		t.Helper()
		b := ctrdCalls(t, scrapeMetrics(t, metricsAddr))
		t0 := time.Now()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", rpc, err)
		}
		times[rpc] = append(times[rpc], time.Since(t0))
		a := ctrdCalls(t, scrapeMetrics(t, metricsAddr))
		for k, v := range a {
			if d := v - b[k]; d > 0 {
				delta[rpc][k] += d
			}
		}
	}
	for i := range n {
		cfg := framework.NewContainerConfig(fmt.Sprintf("c%d", i), framework.BusyboxImageRef, "sleep", "3600")
		var id string
		step("CreateContainer", func() error {
			cctx, cancel := context.WithTimeout(ctx, framework.CallTimeout)
			defer cancel()
			resp, err := rc.CreateContainer(cctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: podCfg})
			id = resp.GetContainerId()
			return err
		})
		step("StartContainer", func() error {
			cctx, cancel := context.WithTimeout(ctx, framework.CallTimeout)
			defer cancel()
			_, err := rc.StartContainer(cctx, &runtimeapi.StartContainerRequest{ContainerId: id})
			return err
		})
		step("StopContainer", func() error {
			cctx, cancel := context.WithTimeout(ctx, framework.CallTimeout)
			defer cancel()
			_, err := rc.StopContainer(cctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 0})
			return err
		})
		step("RemoveContainer", func() error {
			cctx, cancel := context.WithTimeout(ctx, framework.CallTimeout)
			defer cancel()
			_, err := rc.RemoveContainer(cctx, &runtimeapi.RemoveContainerRequest{ContainerId: id})
			return err
		})
	}
	var b strings.Builder
	for _, r := range rpcs {
		var methods []string
		total := 0.0
		for k, v := range delta[r] {
			methods = append(methods, k)
			total += v
		}
		sort.Strings(methods)
		ts := times[r]
		sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
		fmt.Fprintf(&b, "%s: %.1f containerd calls per request, median %v\n", r, total/float64(n), ts[len(ts)/2].Round(time.Microsecond))
		for _, k := range methods {
			fmt.Fprintf(&b, "  %-60s %5.1f\n", k, delta[r][k]/float64(n))
		}
	}
	t.Logf("containerd calls per container RPC over %d cycles (event-monitor calls in the window included):\n%s", n, b.String())
	m := scrapeMetrics(t, metricsAddr)
	for _, line := range strings.Split(m, "\n") {
		for _, r := range rpcs {
			if strings.HasPrefix(line, `cri_containerd_containerd_calls_per_request_sum{method="`+r+`"}`) ||
				strings.HasPrefix(line, `cri_containerd_containerd_calls_per_request_count{method="`+r+`"}`) {
				t.Log(line)
			}
		}
	}
}
