package main

import (
	"bytes"
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/config"
)

type fakeRuntime struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeReady, networkReady bool
}

func (f *fakeRuntime) Version(context.Context, *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{RuntimeName: "cri-containerd", RuntimeVersion: "v0"}, nil
}

func (f *fakeRuntime) Status(context.Context, *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	return &runtimeapi.StatusResponse{Status: &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{
		{Type: runtimeapi.RuntimeReady, Status: f.runtimeReady, Reason: reason(f.runtimeReady), Message: "containerd down"},
		{Type: runtimeapi.NetworkReady, Status: f.networkReady, Reason: reason(f.networkReady), Message: "no CNI config"},
	}}}, nil
}

func reason(ok bool) string {
	if ok {
		return ""
	}
	return "NotReady"
}

// TestHealth: `cri-containerd health` passes when Version answers and the
// runtime is ready (whatever the network), fails otherwise.
func TestHealth(t *testing.T) {
	for _, tc := range []struct {
		name       string
		serve      *fakeRuntime
		wantErr    string
		wantOutput string
	}{
		{name: "ready", serve: &fakeRuntime{runtimeReady: true, networkReady: true}, wantOutput: "RuntimeReady=true, NetworkReady=true"},
		{name: "network not ready is healthy", serve: &fakeRuntime{runtimeReady: true}, wantOutput: "NetworkReady=false (NotReady: no CNI config)"},
		{name: "runtime not ready", serve: &fakeRuntime{networkReady: true}, wantErr: "RuntimeReady=false (NotReady: containerd down)"},
		{name: "nothing listens", wantErr: "Version"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := filepath.Join(t.TempDir(), "cri.sock")
			if tc.serve != nil {
				l, err := net.Listen("unix", sock)
				if err != nil {
					t.Fatal(err)
				}
				srv := grpc.NewServer()
				runtimeapi.RegisterRuntimeServiceServer(srv, tc.serve)
				go func() { _ = srv.Serve(l) }()
				defer srv.Stop()
			}
			cfg := config.Default()
			cfg.SocketPath = sock
			var out bytes.Buffer
			err := runHealth(cfg, []string{"--timeout", "2s"}, &out)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), tc.wantOutput) {
				t.Errorf("output %q, want %q", out.String(), tc.wantOutput)
			}
		})
	}
}
