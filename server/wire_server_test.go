package server

import (
	"context"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/backend/backendtest"
	"github.com/cri-containerd/cri-containerd/container"
	"github.com/cri-containerd/cri-containerd/image"
	"github.com/cri-containerd/cri-containerd/listwire"
)

// wantSameLists checks that the gRPC server's list answers (kept
// encodings) decode to what the Service's own methods return, for every
// filter kind.
func wantSameLists(t *testing.T, s *Service) {
	t.Helper()
	ctx := context.Background()
	w := wireServer{s}
	for _, f := range []*runtimeapi.ContainerFilter{
		nil, {}, {Id: "c1"}, {PodSandboxId: "aaaa"},
		{State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_EXITED}},
		{LabelSelector: map[string]string{"name": "nginx"}}, {Id: "nope"},
	} {
		req := &runtimeapi.ListContainersRequest{Filter: f}
		want, _ := s.ListContainers(ctx, req)
		got, _ := w.ListContainers(ctx, req)
		if len(got.GetContainers()) != 0 {
			t.Fatalf("filter %v: the wire answer carries messages: %v", f, got)
		}
		if dec := listwire.Decode(got); !proto.Equal(dec, want) {
			t.Errorf("filter %v: wire answer decodes to\n%v\nwant\n%v", f, dec, want)
		}
	}
	for _, f := range []*runtimeapi.PodSandboxFilter{
		nil, {}, {Id: "aaaa"},
		{State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY}},
		{LabelSelector: map[string]string{"app": "web"}}, {Id: "nope"},
	} {
		req := &runtimeapi.ListPodSandboxRequest{Filter: f}
		want, _ := s.ListPodSandbox(ctx, req)
		got, _ := w.ListPodSandbox(ctx, req)
		if len(got.GetItems()) != 0 {
			t.Fatalf("filter %v: the wire answer carries messages: %v", f, got)
		}
		if dec := listwire.Decode(got); !proto.Equal(dec, want) {
			t.Errorf("filter %v: wire answer decodes to\n%v\nwant\n%v", f, dec, want)
		}
	}
}

// TestWireListsMatchMessages: the kept encodings are the messages, from
// the first list (made) and the next (kept), and after what changes an
// entry: a container's exit, a sandbox going NOTREADY, the image store
// naming a container's image by another tag.
func TestWireListsMatchMessages(t *testing.T) {
	s := filterService(t)
	wantSameLists(t, s)
	wantSameLists(t, s)

	c, err := s.containers.Get("c1aa0001")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Update(func(st *container.Status) error { st.FinishedAt, st.ExitCode = 5, 1; return nil }); err != nil {
		t.Fatal(err)
	}
	sb, err := s.sandboxes.Get("bbbb3333")
	if err != nil {
		t.Fatal(err)
	}
	sb.SetNotReady(0, time.Now())
	s.deps.Images.(*backendtest.Images).Add(image.Image{ID: testBusyboxID, RepoTags: []string{"docker.io/library/busybox:retagged"},
		RepoDigests: []string{"docker.io/library/busybox@sha256:4444"}})
	wantSameLists(t, s)

	got := listwire.Decode(wireServer{s}.listContainersWire(&runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{Id: "c1aa0001"}}))
	if it := got.GetContainers()[0]; it.GetState() != runtimeapi.ContainerState_CONTAINER_EXITED ||
		it.GetImage().GetImage() != "docker.io/library/busybox:retagged" || it.GetImageRef() != "docker.io/library/busybox@sha256:4444" {
		t.Errorf("entry after the changes = %v", it)
	}
}

// TestWireListsEncodeOnce: a second list of unchanged objects encodes
// nothing again (the entries are the same bytes).
func TestWireListsEncodeOnce(t *testing.T) {
	s := filterService(t)
	w := wireServer{s}
	w.listContainersWire(&runtimeapi.ListContainersRequest{})
	c, _ := s.containers.Get("c2bb0003")
	key, _ := s.listedContainer(c, nil)
	first, ok := c.ListWire.Get(key)
	if !ok {
		t.Fatal("no entry kept after a list")
	}
	w.listContainersWire(&runtimeapi.ListContainersRequest{})
	again, _ := c.ListWire.Get(key)
	if &first[0] != &again[0] {
		t.Error("the entry was encoded again for an unchanged container")
	}
}
