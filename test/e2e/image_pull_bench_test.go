package e2e

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/test/e2e/framework"
)

// benchPullImage is the image critest -benchmark pulls (see
// deploy/benchmark-params.yaml), served by the stack's registry through the
// hosts.toml tree.
const benchPullImage = "public.ecr.aws/docker/library/busybox:1.35.0-glibc"

// TestImagePullCycleTimes measures what critest's image benchmark measures
// (pull, status, remove of one image, N cycles, 2 at a time) against a
// private daemon built from the tree, and reports the medians and the
// containerd calls each RPC made, by containerd method. It only reports:
// nothing is asserted about speed. It runs only with CRI_E2E_PULL_BENCH=N
// (cycles); CRI_E2E_PULL_BENCH_REF=unix:///path runs the same cycles against
// another CRI endpoint (e.g. a private containerd with its built-in CRI)
// right after, for a side-by-side figure. CRI_E2E_PULL_BENCH_KEEP=ref pulls
// ref on each daemon first and keeps it: with an image sharing the pulled
// one's layers present (as in `make benchmark`, where the container
// benchmark's busybox shares its layer), a pull fetches and writes only
// metadata and the daemon's own round trips weigh most.
func TestImagePullCycleTimes(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("CRI_E2E_PULL_BENCH"))
	if n <= 0 {
		t.Skip("set CRI_E2E_PULL_BENCH=N to run N pull/status/remove cycles")
	}
	env := framework.RequireStack(t, "ContainerdAddress", "CertsD")
	metricsAddr := freeAddr(t)
	args := []string{"--metrics-addr", metricsAddr}
	args = append(args, strings.Fields(os.Getenv("CRI_E2E_PULL_BENCH_ARGS"))...)
	var recv *otlpReceiver
	if os.Getenv("CRI_E2E_PULL_BENCH_TRACE") != "" {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		recv = &otlpReceiver{services: map[string]bool{}}
		srv := grpc.NewServer()
		coltracepb.RegisterTraceServiceServer(srv, recv)
		go func() { _ = srv.Serve(l) }()
		t.Cleanup(srv.Stop)
		args = append(args, "--tracing-endpoint", "http://"+l.Addr().String())
	}
	d := framework.StartDaemon(t, env, framework.DaemonOptions{RegistryConfigPath: env.CertsD, ExtraArgs: args})
	c := d.ImageClient()
	keep := os.Getenv("CRI_E2E_PULL_BENCH_KEEP")
	if keep != "" {
		mustPull(t, c, keep, nil)
	}
	// Warm up: the first pull creates the namespace's content and snapshots.
	mustPull(t, c, benchPullImage, nil)
	removeImage(t, c, benchPullImage)

	before := ctrdCalls(t, scrapeMetrics(t, metricsAddr))
	par, _ := strconv.Atoi(os.Getenv("CRI_E2E_PULL_BENCH_PAR"))
	par = max(par, 1)
	pull, st, rm := pullCycles(t, c, n, par)
	after := ctrdCalls(t, scrapeMetrics(t, metricsAddr))
	t.Logf("cri-containerd: %d cycles: pull %s | status %s | remove %s", n, pull, st, rm)
	m := scrapeMetrics(t, metricsAddr)
	for _, line := range strings.Split(m, "\n") {
		if strings.HasPrefix(line, "cri_containerd_containerd_calls_per_request_sum{method=\"PullImage\"}") ||
			strings.HasPrefix(line, "cri_containerd_containerd_calls_per_request_count{method=\"PullImage\"}") ||
			strings.HasPrefix(line, "cri_containerd_containerd_calls_per_request_sum{method=\"RemoveImage\"}") ||
			strings.HasPrefix(line, "cri_containerd_containerd_calls_per_request_count{method=\"RemoveImage\"}") {
			t.Log(line)
		}
	}
	var methods []string
	for k := range after {
		methods = append(methods, k)
	}
	sort.Strings(methods)
	var b strings.Builder
	for _, k := range methods {
		if dv := after[k] - before[k]; dv > 0 {
			fmt.Fprintf(&b, "  %-60s %6.1f per cycle\n", k, dv/float64(n))
		}
	}
	t.Logf("containerd calls per pull+status+remove cycle, by method (event-watcher refreshes included):\n%s", b.String())

	if recv != nil {
		d.Stop() // flushes the spans
		spans := recv.snapshot()
		printPullTrace(t, spans, "PullImage")
		printPullTrace(t, spans, "RemoveImage")
	}

	if ref := os.Getenv("CRI_E2E_PULL_BENCH_REF"); ref != "" {
		rc := runtimeapi.NewImageServiceClient(framework.DialCRI(t, ref))
		if keep != "" {
			mustPull(t, rc, keep, nil)
		}
		mustPull(t, rc, benchPullImage, nil)
		removeImage(t, rc, benchPullImage)
		pull, st, rm := pullCycles(t, rc, n, par)
		t.Logf("%s: %d cycles: pull %s | status %s | remove %s", ref, n, pull, st, rm)
	}
}

type latencies []time.Duration

func (l latencies) String() string {
	s := append(latencies(nil), l...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return "-"
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return fmt.Sprintf("median %.2f ms p90 %.2f ms min %.2f ms", ms(s[len(s)/2]), ms(s[len(s)*9/10]), ms(s[0]))
}

// pullCycles runs n pull/status/remove cycles of benchPullImage, par at a
// time, as critest's image lifecycle benchmark does.
func pullCycles(t *testing.T, c runtimeapi.ImageServiceClient, n, par int) (pull, st, rm latencies) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, par)
	for range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			spec := &runtimeapi.ImageSpec{Image: benchPullImage}
			t0 := time.Now()
			if _, err := c.PullImage(ctx, &runtimeapi.PullImageRequest{Image: spec}); err != nil {
				t.Errorf("PullImage: %v", err)
				return
			}
			t1 := time.Now()
			if _, err := c.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: spec}); err != nil {
				t.Errorf("ImageStatus: %v", err)
			}
			t2 := time.Now()
			if _, err := c.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: spec}); err != nil {
				t.Errorf("RemoveImage: %v", err)
			}
			t3 := time.Now()
			mu.Lock()
			pull, st, rm = append(pull, t1.Sub(t0)), append(st, t2.Sub(t1)), append(rm, t3.Sub(t2))
			mu.Unlock()
		})
	}
	wg.Wait()
	return pull, st, rm
}

// ctrdCalls parses cri_containerd_containerd_requests_total by method.
func ctrdCalls(t *testing.T, metrics string) map[string]float64 {
	out := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(metrics))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	const p = `cri_containerd_containerd_requests_total{method="`
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, p) {
			continue
		}
		rest := line[len(p):]
		i := strings.Index(rest, `"}`)
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(rest[i+2:]), 64)
		if err == nil {
			out[rest[:i]] = v
		}
	}
	return out
}

// printPullTrace logs the span tree of the CRI method call (PullImage,
// RemoveImage) with the median duration: offsets from its start and
// durations, in ms.
func printPullTrace(t *testing.T, spans []*tracepb.Span, method string) {
	var pulls []*tracepb.Span
	for _, s := range spans {
		if strings.HasSuffix(s.GetName(), method) {
			pulls = append(pulls, s)
		}
	}
	if len(pulls) == 0 {
		t.Logf("no %s span", method)
		return
	}
	dur := func(s *tracepb.Span) uint64 { return s.GetEndTimeUnixNano() - s.GetStartTimeUnixNano() }
	sort.Slice(pulls, func(i, j int) bool { return dur(pulls[i]) < dur(pulls[j]) })
	root := pulls[len(pulls)/2]
	kids := descendants(spans, root)
	sort.Slice(kids, func(i, j int) bool { return kids[i].GetStartTimeUnixNano() < kids[j].GetStartTimeUnixNano() })
	depth := map[string]int{hex.EncodeToString(root.GetSpanId()): 0}
	var b strings.Builder
	ms := func(ns uint64) float64 { return float64(ns) / 1e6 }
	fmt.Fprintf(&b, "%s %.2f ms\n", root.GetName(), ms(dur(root)))
	for _, s := range kids {
		dp := depth[hex.EncodeToString(s.GetParentSpanId())] + 1
		depth[hex.EncodeToString(s.GetSpanId())] = dp
		fmt.Fprintf(&b, "%s+%7.2f %7.2f ms %s\n", strings.Repeat("  ", dp), ms(s.GetStartTimeUnixNano()-root.GetStartTimeUnixNano()), ms(dur(s)), s.GetName())
	}
	t.Logf("median %s trace:\n%s", method, b.String())
}

// TestImagePullViaTransferService: on a containerd with the Transfer service,
// pulls (also with credentials, which containerd asks the daemon for over a
// stream) go through it: one Transfer call, no client-side content writes.
// A pull it cannot do (bad credentials) still fails with the registry's
// code, from the client-side retry.
func TestImagePullViaTransferService(t *testing.T) {
	env := framework.RequireStack(t, "ContainerdAddress")
	reg := framework.StartTestRegistry(t, "alice", "s3cret")
	pushed := reg.PushRandomImage(t, "private/transfer:v1", 2, 4096, "")
	metricsAddr := freeAddr(t)
	d := framework.StartDaemon(t, env, framework.DaemonOptions{ExtraArgs: []string{"--metrics-addr", metricsAddr}})
	c := d.ImageClient()
	const transferMethod = "containerd.services.transfer.v1.Transfer/Transfer"
	const writeMethod = "containerd.services.content.v1.Content/Write"

	before := ctrdCalls(t, scrapeMetrics(t, metricsAddr))
	id := mustPull(t, c, pushed.Ref, &runtimeapi.AuthConfig{Username: "alice", Password: "s3cret"})
	after := ctrdCalls(t, scrapeMetrics(t, metricsAddr))
	if id != pushed.ConfigDigest {
		t.Fatalf("image ID %s, want %s", id, pushed.ConfigDigest)
	}
	if after[transferMethod]-before[transferMethod] != 1 || after[writeMethod] != before[writeMethod] {
		t.Fatalf("pull made %v Transfer calls and %v content writes, want 1 and 0 (containerd calls: %v)",
			after[transferMethod]-before[transferMethod], after[writeMethod]-before[writeMethod], after)
	}
	st := imageStatus(t, c, pushed.Ref)
	if want := []string{pushed.Repo + "@" + pushed.ManifestDigest}; !slices.Equal(st.RepoDigests, want) || !slices.Equal(st.RepoTags, []string{pushed.Ref}) {
		t.Errorf("tags %v digests %v, want [%s] %v", st.RepoTags, st.RepoDigests, pushed.Ref, want)
	}
	removeImage(t, c, pushed.Ref)

	_, err := pullImage(ctxT(t), c, pushed.Ref, &runtimeapi.AuthConfig{Username: "alice", Password: "wrong"})
	wantCode(t, "wrong password", err, codes.Unauthenticated)
}
