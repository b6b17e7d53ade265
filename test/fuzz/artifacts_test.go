package main

import (
	"context"
	"math/rand"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// stuckRuntime answers Version and lets RemovePodSandbox hang until the
// caller gives up.
type stuckRuntime struct {
	runtimeapi.UnimplementedRuntimeServiceServer
}

func (stuckRuntime) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{RuntimeName: "stuck"}, nil
}

func (stuckRuntime) RemovePodSandbox(ctx context.Context, _ *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// TestHangKeepsGoroutineDumpAndDaemonLog: a call that hits its deadline is
// reported with a goroutine dump taken from the daemon's pprof socket while
// the call was still inside the daemon, and a failed run's daemon log is
// copied where it survives the test's temporary directories.
func TestHangKeepsGoroutineDumpAndDaemonLog(t *testing.T) {
	dir := t.TempDir()
	inCall := make(chan struct{}, 1)

	grpcSock := filepath.Join(dir, "cri.sock")
	gl, err := net.Listen("unix", grpcSock)
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if strings.HasSuffix(info.FullMethod, "/RemovePodSandbox") {
			select {
			case inCall <- struct{}{}:
			default:
			}
		}
		return h(ctx, req)
	}))
	runtimeapi.RegisterRuntimeServiceServer(gs, stuckRuntime{})
	go func() { _ = gs.Serve(gl) }()
	defer gs.Stop()

	pprofSock := filepath.Join(dir, "pprof.sock")
	pl, err := net.Listen("unix", pprofSock)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/debug/pprof/goroutine" || r.URL.Query().Get("debug") != "2" {
			http.NotFound(w, r)
			return
		}
		select {
		case <-inCall:
			_, _ = w.Write([]byte("goroutine 7 [select]:\nRemovePodSandbox still inside\n"))
		default:
			_, _ = w.Write([]byte("the call had already returned\n"))
		}
	})}
	go func() { _ = hs.Serve(pl) }()
	defer hs.Close()

	conn, err := grpc.NewClient("unix://"+grpcSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	keep := filepath.Join(dir, "keep")
	cfg := Config{WorkDir: dir, CallTimeout: 1e9, KeepDir: keep, PprofSocket: pprofSock, HostPortMin: 47100, HostPortMax: 47199}
	f := &fuzzer{
		cfg: cfg, g: &gen{r: rand.New(rand.NewSource(1))}, conn: conn, rc: runtimeapi.NewRuntimeServiceClient(conn),
		real: realTargets{podID: "pod", ctrID: "ctr", podCfg: &runtimeapi.PodSandboxConfig{}},
		art:  newArtifacts(keep, pprofSock), sum: newSummary(), pods: map[string]bool{}, ctrs: map[string]bool{},
	}
	ms, err := methods(nil, []string{"RemovePodSandbox"})
	if err != nil || len(ms) != 1 {
		t.Fatalf("methods: %v %v", ms, err)
	}
	f.one(context.Background(), ms[0])
	if len(f.sum.Hangs) != 1 || !strings.Contains(f.sum.Hangs[0], "goroutines in "+keep) {
		t.Fatalf("hangs %q, want one with a goroutine dump in %s", f.sum.Hangs, keep)
	}
	kept := f.art.kept()
	if len(kept) != 1 {
		t.Fatalf("kept %v", kept)
	}
	b, err := os.ReadFile(kept[0])
	if err != nil || !strings.Contains(string(b), "RemovePodSandbox still inside") {
		t.Fatalf("dump %s: %q %v (want the one taken during the call)", kept[0], b, err)
	}

	log := filepath.Join(dir, "daemon.log")
	if err := os.WriteFile(log, []byte("I1205 the log\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.art.daemonLog(log)
	f.sum.Kept = f.art.kept()
	if b, err := os.ReadFile(filepath.Join(keep, "daemon.log")); err != nil || string(b) != "I1205 the log\n" {
		t.Fatalf("kept log %q %v", b, err)
	}
	if tab := f.sum.Table(); !strings.Contains(tab, "kept: "+filepath.Join(keep, "daemon.log")) {
		t.Fatalf("the table does not say where the log is:\n%s", tab)
	}

	// A quick call takes no dump.
	ms, _ = methods(nil, []string{"Version"})
	f.one(context.Background(), ms[0])
	if len(f.art.kept()) != 2 {
		t.Fatalf("a quick call kept %v", f.art.kept())
	}
}
