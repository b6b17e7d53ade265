package server

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/backend/backendtest"
	"github.com/cri-containerd/cri-containerd/container"
	"github.com/cri-containerd/cri-containerd/image"
	"github.com/cri-containerd/cri-containerd/sandbox"
)

// Issue 9 targets with 500 running containers: ListContainers and
// ListPodSandbox <= 1 ms, ContainerStatus <= 0.2 ms. These benchmarks
// measure them in the handler and through a real gRPC server on a unix
// socket (what a client sees, minus the daemon's instrumentation), with
// the labels and annotations kubelet puts on every pod and container.

func kubeletLabels(pod, name string) (labels, annotations map[string]string) {
	labels = map[string]string{
		"io.kubernetes.pod.name":       pod,
		"io.kubernetes.pod.namespace":  "default",
		"io.kubernetes.pod.uid":        "0f9d3c2a-5a4e-4b8c-9d0e-" + pod,
		"io.kubernetes.container.name": name,
	}
	annotations = map[string]string{
		"io.kubernetes.container.hash":                     "4b1c5a3e",
		"io.kubernetes.container.restartCount":             "0",
		"io.kubernetes.container.terminationMessagePath":   "/dev/termination-log",
		"io.kubernetes.container.terminationMessagePolicy": "File",
		"io.kubernetes.pod.terminationGracePeriod":         "30",
	}
	return labels, annotations
}

func benchListService(b *testing.B, pods, perPod int) *Service {
	b.Helper()
	s := &Service{sandboxes: sandbox.NewStore(), containers: container.NewStore()}
	images := backendtest.NewImages()
	images.Add(image.Image{ID: "sha256:2222222222222222222222222222222222222222222222222222222222222222",
		RepoTags:    []string{"docker.io/library/busybox:latest"},
		RepoDigests: []string{"docker.io/library/busybox@sha256:3333333333333333333333333333333333333333333333333333333333333333"}},
		"docker.io/library/busybox:latest", "sha256:2222222222222222222222222222222222222222222222222222222222222222")
	s.deps.Images = images
	for p := range pods {
		podID := fmt.Sprintf("%064x", p)
		podName := fmt.Sprintf("web-%03d", p)
		labels, annotations := kubeletLabels(podName, "")
		sb := sandbox.New(sandbox.Metadata{ID: podID, Name: podName, Config: &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: podName, Namespace: "default", Uid: podName},
			Labels:   labels, Annotations: annotations,
		}})
		sb.SetReady(100)
		if err := s.sandboxes.Add(sb); err != nil {
			b.Fatal(err)
		}
		for c := range perPod {
			id := fmt.Sprintf("%062x%02d", p, c)
			name := fmt.Sprintf("app-%d", c)
			labels, annotations := kubeletLabels(podName, name)
			ctr := container.New(container.Metadata{ID: id, SandboxID: podID, ImageName: "docker.io/library/busybox:latest",
				ImageRef: "sha256:2222222222222222222222222222222222222222222222222222222222222222",
				LogPath:  filepath.Join("/var/log/pods", podName, name, "0.log"),
				Config: &runtimeapi.ContainerConfig{
					Metadata: &runtimeapi.ContainerMetadata{Name: name},
					Image:    &runtimeapi.ImageSpec{Image: "busybox"},
					Labels:   labels, Annotations: annotations,
				}}, b.TempDir(), container.Status{Pid: 1, CreatedAt: 1, StartedAt: 2})
			if err := s.containers.Add(ctr); err != nil {
				b.Fatal(err)
			}
		}
	}
	return s
}

func benchCRIClient(b *testing.B, s runtimeapi.RuntimeServiceServer) runtimeapi.RuntimeServiceClient {
	b.Helper()
	sock := filepath.Join(b.TempDir(), "cri.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer(grpc.MaxSendMsgSize(16 * 1024 * 1024))
	runtimeapi.RegisterRuntimeServiceServer(srv, s)
	go func() { _ = srv.Serve(l) }()
	b.Cleanup(srv.Stop)
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16*1024*1024)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	return runtimeapi.NewRuntimeServiceClient(conn)
}

// BenchmarkListContainers500: "handler" builds the messages (in-process
// callers), "encode" adds what gRPC did with them on every call before the
// server kept each entry's encoding, "wire" is the daemon's work now
// (wireServer: kept entries, concatenated, then the codec's Marshal);
// "grpc" is a client's view of the daemon (wireServer), "grpc-messages" the
// same before, both with the client's decoding of 500 entries included.
func BenchmarkListContainers500(b *testing.B) {
	s := benchListService(b, 100, 5)
	ctx := context.Background()
	req := &runtimeapi.ListContainersRequest{}
	b.Run("handler", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if r, err := s.ListContainers(ctx, req); err != nil || len(r.Containers) != 500 {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r, _ := s.ListContainers(ctx, req)
			if _, err := proto.Marshal(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("wire", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := proto.Marshal(s.listContainersWire(req)); err != nil {
				b.Fatal(err)
			}
		}
	})
	for name, srv := range map[string]runtimeapi.RuntimeServiceServer{"grpc": wireServer{s}, "grpc-messages": s} {
		b.Run(name, func(b *testing.B) {
			cl := benchCRIClient(b, srv)
			b.ReportAllocs()
			for b.Loop() {
				if r, err := cl.ListContainers(ctx, req); err != nil || len(r.Containers) != 500 {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkListPodSandbox100: as BenchmarkListContainers500, for 100 pods.
func BenchmarkListPodSandbox100(b *testing.B) {
	s := benchListService(b, 100, 5)
	ctx := context.Background()
	req := &runtimeapi.ListPodSandboxRequest{}
	b.Run("handler", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if r, err := s.ListPodSandbox(ctx, req); err != nil || len(r.Items) != 100 {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			r, _ := s.ListPodSandbox(ctx, req)
			if _, err := proto.Marshal(r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("wire", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := proto.Marshal(s.listPodSandboxWire(req)); err != nil {
				b.Fatal(err)
			}
		}
	})
	for name, srv := range map[string]runtimeapi.RuntimeServiceServer{"grpc": wireServer{s}, "grpc-messages": s} {
		b.Run(name, func(b *testing.B) {
			cl := benchCRIClient(b, srv)
			b.ReportAllocs()
			for b.Loop() {
				if r, err := cl.ListPodSandbox(ctx, req); err != nil || len(r.Items) != 100 {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkContainerStatus(b *testing.B) {
	s := benchListService(b, 100, 5)
	ctx := context.Background()
	id := s.containers.List()[250].ID
	b.Run("handler", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("grpc", func(b *testing.B) {
		cl := benchCRIClient(b, s)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := cl.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
