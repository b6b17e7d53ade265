package main

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/test/e2e/framework"
)

// TestLiveFuzz starts a private daemon on the stack's containerd and CNI,
// and runs the request fuzzer against it: CRI_FUZZ_REQUESTS requests
// (default 2000), seed CRI_FUZZ_SEED (default: the time). It fails on any
// panic, crash, hang or leak.
//
//	set -a; source <(bash -c 'source deploy/lib.sh; stack_env'); set +a
//	CRI_CONTAINERD_BIN= CRI_FUZZ_REQUESTS=3000 go test -count=1 -v -timeout 0 -run TestLiveFuzz ./test/fuzz/
func TestLiveFuzz(t *testing.T) {
	env := framework.RequireStack(t, "ContainerdAddress", "CertsD")
	if env.CNIConfDir == "" || env.CNIBinDir == "" {
		t.Skip("e2e stack not configured: CNI_CONF_DIR / CNI_BIN_DIR are not set")
	}
	n := envInt(t, "CRI_FUZZ_REQUESTS", 2000)
	seed := int64(envInt(t, "CRI_FUZZ_SEED", int(time.Now().UnixNano()%1e9)))
	workers := envInt(t, "CRI_FUZZ_WORKERS", 4)
	var maxDur time.Duration
	if v := os.Getenv("CRI_FUZZ_MAX_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("CRI_FUZZ_MAX_DURATION=%q: %v", v, err)
		}
		maxDur = d
	}
	// The evidence of a failure (goroutine dumps at each hang, the daemon
	// log) outlives the test's temporary directories.
	keep := os.Getenv("CRI_FUZZ_KEEP_DIR")
	if keep == "" {
		keep = filepath.Join(os.TempDir(), fmt.Sprintf("crifuzz-%d-%s", seed, time.Now().Format("20060102-150405")))
	}
	pprofDir, err := os.MkdirTemp("", "crifuzz-pprof-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(pprofDir) })
	pprofSock := filepath.Join(pprofDir, "pprof.sock")
	d := framework.StartDaemon(t, env, framework.DaemonOptions{RegistryConfigPath: env.CertsD,
		ExtraArgs: []string{"--pprof-addr", "unix://" + pprofSock}})
	t.Cleanup(func() {
		framework.StopAndRemovePods(t, d.RuntimeClient())
		framework.UnmountUnder(t, d.Dir)
	})
	work := t.TempDir()
	cfg := Config{
		Endpoint: d.Endpoint, N: n, Seed: seed, Workers: workers, MaxDuration: maxDur, Image: framework.BusyboxImageRef,
		WorkDir: work, StateDir: d.StateDir(), RootDir: d.RootDir(),
		ContainerdAddress: env.ContainerdAddress, ContainerdNamespace: d.Opts.Namespace,
		IPAMDir: framework.IPAMDataDir(t, env.CNIConfDir), DaemonLog: d.LogPath(),
		Progress: testWriter{t}, KeepDir: keep, PprofSocket: pprofSock,
	}
	if v := os.Getenv("CRI_FUZZ_ONLY"); v != "" {
		cfg.OnlyRPCs = strings.Split(v, ",")
	}
	t.Logf("fuzzing %s with %d requests, %d workers, seed %d (CRI_FUZZ_SEED=%d CRI_FUZZ_WORKERS=%d reproduce)", d.Endpoint, n, workers, seed, seed, workers)
	sum, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", sum.Table())
	if sum.Failed() {
		t.Fatalf("the fuzzer found problems (seed %d); kept in %s: %v", seed, keep, sum.Kept)
	}
	if sum.Requests != n && maxDur == 0 {
		t.Fatalf("sent %d requests, want %d", sum.Requests, n)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	return n
}

// TestRequestsAreValidProtobuf: every generated request of every RPC
// marshals, and the same seed gives the same requests.
func TestRequestsAreValidProtobuf(t *testing.T) {
	ms, err := methods(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) < 40 {
		t.Fatalf("only %d RPCs found", len(ms))
	}
	mk := func() *fuzzer {
		return &fuzzer{
			cfg:     Config{WorkDir: "/fuzz", HostPortMin: 47100, HostPortMax: 47199, Image: "busybox"},
			g:       &gen{r: rand.New(rand.NewSource(7))},
			real:    realTargets{podID: "pod", ctrID: "ctr", podCfg: &runtimeapi.PodSandboxConfig{}},
			profile: "/fuzz/p.json",
		}
	}
	a, b := mk(), mk()
	for i := 0; i < 3000; i++ {
		m := ms[i%len(ms)]
		ra, rb := a.request(m), b.request(m)
		ba, err := proto.MarshalOptions{Deterministic: true}.Marshal(ra)
		if err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		bb, _ := proto.MarshalOptions{Deterministic: true}.Marshal(rb)
		if string(ba) != string(bb) {
			t.Fatalf("%s: same seed, different requests", m.name)
		}
	}
}

// TestConfineKeepsHostEffectsInside: host ports, host paths, log
// directories, seccomp profiles and pod CIDRs are confined.
func TestConfineKeepsHostEffectsInside(t *testing.T) {
	f := &fuzzer{
		cfg:     Config{WorkDir: "/fuzz", HostPortMin: 47100, HostPortMax: 47199},
		g:       &gen{r: rand.New(rand.NewSource(1))},
		profile: "/fuzz/p.json",
	}
	run := &runtimeapi.RunPodSandboxRequest{Config: &runtimeapi.PodSandboxConfig{
		LogDirectory: "/../../etc",
		PortMappings: []*runtimeapi.PortMapping{{HostPort: 5000}, {HostPort: 70000}, {HostPort: -1}},
		Linux: &runtimeapi.LinuxPodSandboxConfig{CgroupParent: "/system.slice", SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
			Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/dev/zero"},
		}},
	}}
	f.confine(run.ProtoReflect())
	c := run.GetConfig()
	if p := c.GetPortMappings()[0].GetHostPort(); p < 47100 || p > 47199 {
		t.Errorf("host port %d", p)
	}
	if c.GetPortMappings()[1].GetHostPort() != 70000 || c.GetPortMappings()[2].GetHostPort() != -1 {
		t.Errorf("invalid host ports changed: %v", c.GetPortMappings())
	}
	if c.GetLogDirectory() != "/fuzz/logs/etc" || c.GetLinux().GetCgroupParent() != "" {
		t.Errorf("log dir %q cgroup parent %q", c.GetLogDirectory(), c.GetLinux().GetCgroupParent())
	}
	if ref := c.GetLinux().GetSecurityContext().GetSeccomp().GetLocalhostRef(); ref != "/fuzz/p.json" && ref != "/fuzz/seccomp/dev/zero" {
		t.Errorf("seccomp ref %q", ref)
	}
	create := &runtimeapi.CreateContainerRequest{Config: &runtimeapi.ContainerConfig{
		Mounts:  []*runtimeapi.Mount{{HostPath: "/"}, {HostPath: "rel"}},
		Devices: []*runtimeapi.Device{{HostPath: "/dev/sda"}},
	}}
	f.confine(create.ProtoReflect())
	if m := create.GetConfig().GetMounts(); m[0].GetHostPath() != "/fuzz/hostpaths" || m[1].GetHostPath() != "rel" {
		t.Errorf("mounts %v", m)
	}
	if d := create.GetConfig().GetDevices()[0].GetHostPath(); d != "/dev/null" {
		t.Errorf("device %q", d)
	}
	upd := &runtimeapi.UpdateRuntimeConfigRequest{RuntimeConfig: &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: "10.0.0.0/8"}}}
	f.confine(upd.ProtoReflect())
	if upd.GetRuntimeConfig().GetNetworkConfig().GetPodCidr() != "" {
		t.Errorf("pod CIDR kept")
	}
	var _ protoreflect.Message = upd.ProtoReflect()
}

// TestWorkerSeedsReproducible: worker 0 keeps the run's seed, the others
// get distinct seeds that the run's seed alone determines.
func TestWorkerSeedsReproducible(t *testing.T) {
	for _, n := range []int{1, 2, 4, 7} {
		a, b := workerSeeds(42, n), workerSeeds(42, n)
		if len(a) != n || a[0] != 42 {
			t.Fatalf("workerSeeds(42, %d) = %v", n, a)
		}
		seen := map[int64]bool{}
		for i := range a {
			if a[i] != b[i] {
				t.Fatalf("n=%d: seeds differ between calls: %v %v", n, a, b)
			}
			if seen[a[i]] {
				t.Fatalf("n=%d: seed %d repeated: %v", n, a[i], a)
			}
			seen[a[i]] = true
		}
	}
	if workerSeeds(43, 2)[1] == workerSeeds(42, 2)[1] {
		t.Fatal("a different run seed gives the same worker seed")
	}
}

// TestShareSplitsAllRequests: the workers' shares add up to N and differ by
// at most one.
func TestShareSplitsAllRequests(t *testing.T) {
	for _, tc := range []struct{ n, workers int }{{0, 1}, {1, 4}, {100000, 4}, {2001, 3}, {5, 7}} {
		total, lo, hi := 0, tc.n, 0
		for w := 0; w < tc.workers; w++ {
			s := share(tc.n, tc.workers, w)
			total += s
			lo, hi = min(lo, s), max(hi, s)
		}
		if total != tc.n || hi-lo > 1 {
			t.Errorf("n=%d workers=%d: total %d, shares %d..%d", tc.n, tc.workers, total, lo, hi)
		}
	}
}

// TestSummaryMerge: merging workers' summaries adds every count and keeps
// every hang and leak.
func TestSummaryMerge(t *testing.T) {
	a, b := newSummary(), newSummary()
	a.Requests, b.Requests = 3, 4
	a.Codes[codes.OK], b.Codes[codes.OK], b.Codes[codes.NotFound] = 2, 1, 3
	a.PerRPC["Version"] = map[codes.Code]int{codes.OK: 2}
	b.PerRPC["Version"] = map[codes.Code]int{codes.OK: 1}
	a.Time["Version"], b.Time["Version"] = time.Second, 2*time.Second
	a.Hangs, b.Hangs = []string{"x"}, []string{"y"}
	b.Crashes, b.Recreated, a.Slow = 1, 2, 5
	a.Unknown, b.Unknown = []string{"u"}, []string{"u", "v"}
	s := newSummary()
	s.merge(&a)
	s.merge(&b)
	if s.Requests != 7 || s.Codes[codes.OK] != 3 || s.Codes[codes.NotFound] != 3 || s.PerRPC["Version"][codes.OK] != 3 ||
		s.Time["Version"] != 3*time.Second || len(s.Hangs) != 2 || s.Crashes != 1 || s.Recreated != 2 || s.Slow != 5 || len(s.Unknown) != 2 {
		t.Fatalf("merged summary %+v", s)
	}
	if !s.Failed() {
		t.Fatal("a merged crash and hangs must fail the run")
	}
}

// TestTrimKeepsRealObjects: trim removes the oldest made objects beyond
// maxExtra and never the real pod or container.
func TestTrimKeepsRealObjects(t *testing.T) {
	rs := &recordingRuntime{}
	f := &fuzzer{rc: rs, real: realTargets{podID: "p0", ctrID: "c0"}}
	for i := 0; i < maxExtra+3; i++ {
		f.extraPods = append(f.extraPods, "p"+strconv.Itoa(i))
		f.extraCtrs = append(f.extraCtrs, "c"+strconv.Itoa(i))
	}
	f.trim(context.Background())
	if len(f.extraPods) != maxExtra || len(f.extraCtrs) != maxExtra || f.extraPods[0] != "p3" || f.extraCtrs[0] != "c3" {
		t.Fatalf("left pods %v containers %v", f.extraPods, f.extraCtrs)
	}
	want := []string{"StopContainer c1", "RemoveContainer c1", "StopContainer c2", "RemoveContainer c2",
		"StopPodSandbox p1", "RemovePodSandbox p1", "StopPodSandbox p2", "RemovePodSandbox p2"}
	if strings.Join(rs.calls, ";") != strings.Join(want, ";") {
		t.Fatalf("calls %v, want %v", rs.calls, want)
	}
}

// recordingRuntime records the stop/remove calls trim makes.
type recordingRuntime struct {
	runtimeapi.RuntimeServiceClient
	calls []string
}

func (r *recordingRuntime) StopContainer(_ context.Context, in *runtimeapi.StopContainerRequest, _ ...grpc.CallOption) (*runtimeapi.StopContainerResponse, error) {
	r.calls = append(r.calls, "StopContainer "+in.GetContainerId())
	return &runtimeapi.StopContainerResponse{}, nil
}

func (r *recordingRuntime) RemoveContainer(_ context.Context, in *runtimeapi.RemoveContainerRequest, _ ...grpc.CallOption) (*runtimeapi.RemoveContainerResponse, error) {
	r.calls = append(r.calls, "RemoveContainer "+in.GetContainerId())
	return &runtimeapi.RemoveContainerResponse{}, nil
}

func (r *recordingRuntime) StopPodSandbox(_ context.Context, in *runtimeapi.StopPodSandboxRequest, _ ...grpc.CallOption) (*runtimeapi.StopPodSandboxResponse, error) {
	r.calls = append(r.calls, "StopPodSandbox "+in.GetPodSandboxId())
	return &runtimeapi.StopPodSandboxResponse{}, nil
}

func (r *recordingRuntime) RemovePodSandbox(_ context.Context, in *runtimeapi.RemovePodSandboxRequest, _ ...grpc.CallOption) (*runtimeapi.RemovePodSandboxResponse, error) {
	r.calls = append(r.calls, "RemovePodSandbox "+in.GetPodSandboxId())
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}
