package server

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"

	"github.com/cri-containerd/cri-containerd/container"
)

// TestRegressionLogWriteErrorsMetric: the records of a container whose log
// cannot be written (a full disk, here /dev/full) are counted in the
// daemon's registry as cri_containerd_container_log_write_errors_total.
func TestRegressionLogWriteErrorsMetric(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full")
	}
	reg := prometheus.NewRegistry()
	s := &Service{metrics: NewMetrics(reg)}
	s.config.StateDir = t.TempDir()
	c := container.New(container.Metadata{ID: "c1", LogPath: "/dev/full"}, t.TempDir(), container.Status{})
	cio, err := s.newContainerIO(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cio.Creator()("c1"); err != nil {
		t.Fatal(err)
	}
	defer cio.Cleanup()
	for _, p := range []string{cio.Config().Stdout, cio.Config().Stderr} {
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString("lost line\n"); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
	}
	select {
	case <-cio.Done():
	case <-time.After(30 * time.Second):
		t.Fatal("container output not finished")
	}
	const name = "cri_containerd_container_log_write_errors_total"
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			if v := mf.GetMetric()[0].GetCounter().GetValue(); v != 2 {
				t.Fatalf("%s = %v, want 2", name, v)
			}
			return
		}
	}
	t.Fatalf("%s is not registered", name)
}

// TestRegressionRequestLogLeaksSecrets runs requests and responses that carry
// secrets through the request-logging interceptor at the highest verbosity
// and inspects what it logs: container environment values, ExecSync output,
// registry credentials, verbose container info and streaming URL tokens must
// never appear, while the handler still gets and returns the real messages.
func TestRegressionRequestLogLeaksSecrets(t *testing.T) {
	const token = "Zk9vQmFyVG9rZW4"
	for _, tc := range []struct {
		method  string
		req     any
		resp    any
		secrets []string
		want    []string // what the log must still show
	}{
		{
			method: "CreateContainer",
			req: &runtimeapi.CreateContainerRequest{PodSandboxId: "pod1", Config: &runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
				Envs: []*runtimeapi.KeyValue{
					{Key: "DB_PASSWORD", Value: []byte("hunter2-env")},
					{Key: "API_KEY", Value: []byte("sk-live-42")},
				},
			}},
			resp:    &runtimeapi.CreateContainerResponse{ContainerId: "c1"},
			secrets: []string{"hunter2-env", "sk-live-42"},
			want:    []string{"DB_PASSWORD", "API_KEY", "pod1", "c1"},
		},
		{
			method:  "ExecSync",
			req:     &runtimeapi.ExecSyncRequest{ContainerId: "c1", Cmd: []string{"cat", "/etc/secret"}},
			resp:    &runtimeapi.ExecSyncResponse{Stdout: []byte("s3cr3t-stdout"), Stderr: []byte("s3cr3t-stderr"), ExitCode: 3},
			secrets: []string{"s3cr3t-stdout", "s3cr3t-stderr"},
			want:    []string{"c1", "exit_code:3"},
		},
		{
			method: "PullImage",
			req: &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: "registry.example/app:1"}, Auth: &runtimeapi.AuthConfig{
				Username: "alice", Password: "pw-hunter2", Auth: "YWxpY2U6cHctaHVudGVyMg==", IdentityToken: "id-tok-9", RegistryToken: "reg-tok-9",
			}},
			resp:    &runtimeapi.PullImageResponse{ImageRef: "sha256:abc"},
			secrets: []string{"pw-hunter2", "YWxpY2U6cHctaHVudGVyMg==", "id-tok-9", "reg-tok-9"},
			want:    []string{"registry.example/app:1", "alice"},
		},
		{
			method:  "Exec",
			req:     &runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"sh"}, Stdout: true},
			resp:    &runtimeapi.ExecResponse{Url: "https://10.0.0.1:10010/exec/" + token},
			secrets: []string{token},
			want:    []string{"https://10.0.0.1:10010/exec/"},
		},
		{
			method:  "Attach",
			req:     &runtimeapi.AttachRequest{ContainerId: "c1", Stdout: true},
			resp:    &runtimeapi.AttachResponse{Url: "http://10.0.0.1:10010/attach/" + token},
			secrets: []string{token},
			want:    []string{"http://10.0.0.1:10010/attach/"},
		},
		{
			method:  "PortForward",
			req:     &runtimeapi.PortForwardRequest{PodSandboxId: "pod1", Port: []int32{80}},
			resp:    &runtimeapi.PortForwardResponse{Url: "http://10.0.0.1:10010/portforward/" + token + "?x=" + token},
			secrets: []string{token},
			want:    []string{"http://10.0.0.1:10010/portforward/"},
		},
		{
			method: "ContainerStatus",
			req:    &runtimeapi.ContainerStatusRequest{ContainerId: "c1", Verbose: true},
			resp: &runtimeapi.ContainerStatusResponse{
				Status: &runtimeapi.ContainerStatus{Id: "c1"},
				Info:   map[string]string{"info": `{"config":{"envs":[{"key":"DB_PASSWORD","value":"aHVudGVyMi1lbnY="}]},"runtimeSpec":{"process":{"env":["DB_PASSWORD=hunter2-env"]}}}`},
			},
			secrets: []string{"hunter2-env", "aHVudGVyMi1lbnY="},
			want:    []string{"c1"},
		},
	} {
		t.Run(tc.method, func(t *testing.T) {
			var buf bytes.Buffer
			logger := textlogger.NewLogger(textlogger.NewConfig(textlogger.Verbosity(10), textlogger.Output(&buf)))
			ctx := klog.NewContext(context.Background(), logger)
			before := proto.Clone(tc.req.(proto.Message))
			m := NewMetrics(prometheus.NewRegistry())
			resp, err := m.UnaryInterceptor(ctx, tc.req, &grpc.UnaryServerInfo{FullMethod: "/runtime.v1.RuntimeService/" + tc.method},
				func(_ context.Context, req any) (any, error) {
					if !proto.Equal(req.(proto.Message), before) {
						t.Errorf("the handler got a modified request: %v", req)
					}
					return tc.resp, nil
				})
			if err != nil || resp != tc.resp {
				t.Fatalf("interceptor returned %v, %v; want the handler's response", resp, err)
			}
			logged := buf.String()
			if !strings.Contains(logged, "CRI request") || !strings.Contains(logged, "CRI response") {
				t.Fatalf("request and response not logged at verbosity 10:\n%s", logged)
			}
			for _, s := range tc.secrets {
				if strings.Contains(logged, s) {
					t.Errorf("the request log contains the secret %q:\n%s", s, logged)
				}
			}
			for _, s := range append(tc.want, tc.method) {
				if !strings.Contains(logged, s) {
					t.Errorf("the request log lacks %q:\n%s", s, logged)
				}
			}
		})
	}
}
