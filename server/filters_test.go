package server

import (
	"context"
	"slices"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/backend"
	"github.com/cri-containerd/cri-containerd/backend/backendtest"
	"github.com/cri-containerd/cri-containerd/container"
	"github.com/cri-containerd/cri-containerd/image"
	"github.com/cri-containerd/cri-containerd/sandbox"
)

// filterService holds three pods and four containers in every state:
//
//	pod   aaaa1111 ready     app=web tier=front
//	pod   aaaa2222 not ready app=web tier=back
//	pod   bbbb3333 ready     app=db
//	ctr   c1aa0001 running   in aaaa1111 name=nginx
//	ctr   c1aa0002 exited    in aaaa1111 name=sidecar
//	ctr   c2bb0003 created   in aaaa2222 name=nginx
//	ctr   c3cc0004 unknown   in bbbb3333 name=db
func filterService(t *testing.T) *Service {
	t.Helper()
	images := backendtest.NewImages()
	images.Add(image.Image{ID: testBusyboxID, RepoTags: []string{testBusybox}, RepoDigests: []string{"docker.io/library/busybox@sha256:3333"}})
	s := &Service{
		sandboxes:  sandbox.NewStore(),
		containers: container.NewStore(),
		deps:       backend.Deps{Images: images},
	}
	base := time.Now().UnixNano()
	for i, p := range []struct {
		id     string
		ready  bool
		labels map[string]string
	}{
		{"aaaa1111", true, map[string]string{"app": "web", "tier": "front"}},
		{"aaaa2222", false, map[string]string{"app": "web", "tier": "back"}},
		{"bbbb3333", true, map[string]string{"app": "db"}},
	} {
		sb := sandbox.New(sandbox.Metadata{ID: p.id, CreatedAt: base + int64(i), RuntimeHandler: "runc", Config: &runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: "pod-" + p.id, Namespace: "ns", Uid: p.id},
			Labels:   p.labels,
		}})
		if p.ready {
			sb.SetReady(1)
		} else {
			sb.SetNotReady(0, time.Now())
		}
		if err := s.sandboxes.Add(sb); err != nil {
			t.Fatal(err)
		}
	}
	for i, c := range []struct {
		id, pod, name string
		st            container.Status
	}{
		{"c1aa0001", "aaaa1111", "nginx", container.Status{CreatedAt: 1, StartedAt: 2, Pid: 10}},
		{"c1aa0002", "aaaa1111", "sidecar", container.Status{CreatedAt: 1, StartedAt: 2, FinishedAt: 3}},
		{"c2bb0003", "aaaa2222", "nginx", container.Status{CreatedAt: 1}},
		{"c3cc0004", "bbbb3333", "db", container.Status{CreatedAt: 1, StartedAt: 2, Unknown: true}},
	} {
		ctr := container.New(container.Metadata{
			ID: c.id, SandboxID: c.pod, CreatedAt: base + int64(i), ImageRef: testBusyboxID, ImageName: "busybox",
			Config: &runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: c.name},
				Labels:   map[string]string{"name": c.name, "pod": c.pod},
			},
		}, t.TempDir(), c.st)
		if err := s.containers.Add(ctr); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func TestListPodSandboxFilter(t *testing.T) {
	s := filterService(t)
	ready := &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}
	notReady := &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_NOTREADY}
	for _, tc := range []struct {
		name   string
		filter *runtimeapi.PodSandboxFilter
		want   []string
	}{
		{"no filter", nil, []string{"aaaa1111", "aaaa2222", "bbbb3333"}},
		{"empty filter", &runtimeapi.PodSandboxFilter{}, []string{"aaaa1111", "aaaa2222", "bbbb3333"}},
		{"full id", &runtimeapi.PodSandboxFilter{Id: "aaaa2222"}, []string{"aaaa2222"}},
		{"id prefix", &runtimeapi.PodSandboxFilter{Id: "aaaa"}, []string{"aaaa1111", "aaaa2222"}},
		{"id not a prefix", &runtimeapi.PodSandboxFilter{Id: "1111"}, nil},
		{"unknown id", &runtimeapi.PodSandboxFilter{Id: "ffff"}, nil},
		{"ready", &runtimeapi.PodSandboxFilter{State: ready}, []string{"aaaa1111", "bbbb3333"}},
		{"not ready", &runtimeapi.PodSandboxFilter{State: notReady}, []string{"aaaa2222"}},
		{"label", &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "web"}}, []string{"aaaa1111", "aaaa2222"}},
		{"labels all must match", &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "web", "tier": "back"}}, []string{"aaaa2222"}},
		{"label value differs", &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"app": "cache"}}, nil},
		{"label key missing", &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{"tier": "front", "zone": "a"}}, nil},
		{"id prefix and state", &runtimeapi.PodSandboxFilter{Id: "aaaa", State: ready}, []string{"aaaa1111"}},
		{"state and label", &runtimeapi.PodSandboxFilter{State: ready, LabelSelector: map[string]string{"app": "db"}}, []string{"bbbb3333"}},
		{"all three, no match", &runtimeapi.PodSandboxFilter{Id: "bbbb", State: notReady, LabelSelector: map[string]string{"app": "db"}}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := s.ListPodSandbox(context.Background(), &runtimeapi.ListPodSandboxRequest{Filter: tc.filter})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, it := range resp.GetItems() {
				got = append(got, it.GetId())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestListPodSandboxItem(t *testing.T) {
	s := filterService(t)
	resp, _ := s.ListPodSandbox(context.Background(), &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{Id: "aaaa2222"}})
	it := resp.GetItems()[0]
	if it.GetState() != runtimeapi.PodSandboxState_SANDBOX_NOTREADY || it.GetMetadata().GetName() != "pod-aaaa2222" ||
		it.GetLabels()["tier"] != "back" || it.GetRuntimeHandler() != "runc" || it.GetCreatedAt() == 0 {
		t.Errorf("item = %v", it)
	}
}

func TestListContainersFilter(t *testing.T) {
	s := filterService(t)
	state := func(st runtimeapi.ContainerState) *runtimeapi.ContainerStateValue {
		return &runtimeapi.ContainerStateValue{State: st}
	}
	all := []string{"c1aa0001", "c1aa0002", "c2bb0003", "c3cc0004"}
	for _, tc := range []struct {
		name   string
		filter *runtimeapi.ContainerFilter
		want   []string
	}{
		{"no filter", nil, all},
		{"empty filter", &runtimeapi.ContainerFilter{}, all},
		{"full id", &runtimeapi.ContainerFilter{Id: "c2bb0003"}, []string{"c2bb0003"}},
		{"id prefix", &runtimeapi.ContainerFilter{Id: "c1"}, []string{"c1aa0001", "c1aa0002"}},
		{"unknown id", &runtimeapi.ContainerFilter{Id: "c9"}, nil},
		{"pod id", &runtimeapi.ContainerFilter{PodSandboxId: "aaaa1111"}, []string{"c1aa0001", "c1aa0002"}},
		{"pod id prefix", &runtimeapi.ContainerFilter{PodSandboxId: "aaaa"}, []string{"c1aa0001", "c1aa0002", "c2bb0003"}},
		{"unknown pod", &runtimeapi.ContainerFilter{PodSandboxId: "ffff"}, nil},
		{"running", &runtimeapi.ContainerFilter{State: state(runtimeapi.ContainerState_CONTAINER_RUNNING)}, []string{"c1aa0001"}},
		{"exited", &runtimeapi.ContainerFilter{State: state(runtimeapi.ContainerState_CONTAINER_EXITED)}, []string{"c1aa0002"}},
		{"created", &runtimeapi.ContainerFilter{State: state(runtimeapi.ContainerState_CONTAINER_CREATED)}, []string{"c2bb0003"}},
		{"unknown state", &runtimeapi.ContainerFilter{State: state(runtimeapi.ContainerState_CONTAINER_UNKNOWN)}, []string{"c3cc0004"}},
		{"label", &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"name": "nginx"}}, []string{"c1aa0001", "c2bb0003"}},
		{"labels all must match", &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"name": "nginx", "pod": "aaaa2222"}}, []string{"c2bb0003"}},
		{"label missing", &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"io.kubernetes.container.name": "nginx"}}, nil},
		{"pod and state", &runtimeapi.ContainerFilter{PodSandboxId: "aaaa1111", State: state(runtimeapi.ContainerState_CONTAINER_EXITED)}, []string{"c1aa0002"}},
		{"pod and label", &runtimeapi.ContainerFilter{PodSandboxId: "aaaa1111", LabelSelector: map[string]string{"name": "nginx"}}, []string{"c1aa0001"}},
		{"id, pod, state and label", &runtimeapi.ContainerFilter{
			Id: "c1", PodSandboxId: "aaaa1111", State: state(runtimeapi.ContainerState_CONTAINER_RUNNING),
			LabelSelector: map[string]string{"name": "nginx"},
		}, []string{"c1aa0001"}},
		{"id of another pod", &runtimeapi.ContainerFilter{Id: "c2bb0003", PodSandboxId: "aaaa1111"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := s.ListContainers(context.Background(), &runtimeapi.ListContainersRequest{Filter: tc.filter})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, it := range resp.GetContainers() {
				got = append(got, it.GetId())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

func TestListContainersItem(t *testing.T) {
	s := filterService(t)
	resp, _ := s.ListContainers(context.Background(), &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{Id: "c1aa0001"}})
	it := resp.GetContainers()[0]
	if it.GetPodSandboxId() != "aaaa1111" || it.GetState() != runtimeapi.ContainerState_CONTAINER_RUNNING ||
		it.GetMetadata().GetName() != "nginx" || it.GetLabels()["name"] != "nginx" {
		t.Errorf("item = %v", it)
	}
	// Image names come from the image store: the tag and digest it knows.
	if it.GetImage().GetImage() != testBusybox || it.GetImageRef() != "docker.io/library/busybox@sha256:3333" || it.GetImageId() != testBusyboxID {
		t.Errorf("image %v ref %q id %q", it.GetImage(), it.GetImageRef(), it.GetImageId())
	}
}
