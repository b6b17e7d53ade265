package server

import (
	"encoding/json"
	"reflect"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/config"
	"github.com/cri-containerd/cri-containerd/image"
)

func TestToCRIImage(t *testing.T) {
	base := image.Image{
		ID:          "sha256:abc",
		RepoTags:    []string{"docker.io/library/busybox:latest"},
		RepoDigests: []string{"docker.io/library/busybox@sha256:def"},
		Size:        1234,
		Pinned:      true,
	}
	for _, tc := range []struct {
		user     string
		uid      *runtimeapi.Int64Value
		username string
	}{
		{"", nil, ""},
		{"1002", &runtimeapi.Int64Value{Value: 1002}, ""},
		{"1003:1004", &runtimeapi.Int64Value{Value: 1003}, ""},
		{"www-data", nil, "www-data"},
		{"www-data:1004", nil, "www-data"},
	} {
		img := base
		img.Config = ocispec.Image{Config: ocispec.ImageConfig{User: tc.user}}
		got := toCRIImage(img)
		if got.Id != "sha256:abc" || got.Size != 1234 || !got.Pinned ||
			!reflect.DeepEqual(got.RepoTags, base.RepoTags) || !reflect.DeepEqual(got.RepoDigests, base.RepoDigests) {
			t.Errorf("user %q: %v", tc.user, got)
		}
		if got.GetUid().GetValue() != tc.uid.GetValue() || (got.Uid == nil) != (tc.uid == nil) || got.Username != tc.username {
			t.Errorf("user %q: uid %v username %q; want %v %q", tc.user, got.Uid, got.Username, tc.uid, tc.username)
		}
	}
}

func TestImageVerboseInfo(t *testing.T) {
	img := image.Image{ID: "sha256:abc", ChainID: "sha256:chain", Config: ocispec.Image{Config: ocispec.ImageConfig{Cmd: []string{"sh"}}}}
	info := imageVerboseInfo(img)
	var v struct {
		ChainID   string        `json:"chainID"`
		ImageSpec ocispec.Image `json:"imageSpec"`
	}
	if err := json.Unmarshal([]byte(info["info"]), &v); err != nil {
		t.Fatal(err)
	}
	if v.ChainID != "sha256:chain" || !reflect.DeepEqual(v.ImageSpec.Config.Cmd, []string{"sh"}) {
		t.Errorf("info = %s", info["info"])
	}
}

func TestCredentialsFromAuth(t *testing.T) {
	if credentialsFromAuth(nil) != nil {
		t.Error("nil auth must be anonymous")
	}
	got := credentialsFromAuth(&runtimeapi.AuthConfig{Username: "u", Password: "p", Auth: "a", ServerAddress: "s", IdentityToken: "i", RegistryToken: "r"})
	want := &image.Credentials{Username: "u", Password: "p", Auth: "a", ServerAddress: "s", IdentityToken: "i", RegistryToken: "r"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v", got)
	}
}

func TestHandlerSnapshotter(t *testing.T) {
	cfg := config.Default()
	cfg.Runtimes["kata"] = config.Runtime{Type: "io.containerd.kata.v2", Snapshotter: "devmapper"}
	s := &Service{config: cfg}
	if got := s.handlerSnapshotter(""); got != "" {
		t.Errorf("default handler: %q", got)
	}
	if got := s.handlerSnapshotter("runc"); got != "" {
		t.Errorf("runc: %q", got)
	}
	if got := s.handlerSnapshotter("kata"); got != "devmapper" {
		t.Errorf("kata: %q", got)
	}
	if got := runtimeSnapshotters(cfg); !reflect.DeepEqual(got, []string{"devmapper"}) {
		t.Errorf("runtimeSnapshotters = %v", got)
	}
}

func TestRedactRequest(t *testing.T) {
	req := &runtimeapi.PullImageRequest{
		Image: &runtimeapi.ImageSpec{Image: "busybox"},
		Auth:  &runtimeapi.AuthConfig{Username: "alice", Password: "pw", Auth: "YTpi", IdentityToken: "it", RegistryToken: "rt"},
	}
	got := redactRequest(req).(*runtimeapi.PullImageRequest)
	if a := got.GetAuth(); a.Username != "alice" || a.Password != "<redacted>" || a.Auth != "<redacted>" || a.IdentityToken != "<redacted>" || a.RegistryToken != "<redacted>" {
		t.Errorf("redacted auth = %v", a)
	}
	if req.Auth.Password != "pw" {
		t.Error("the request itself was modified")
	}
	other := &runtimeapi.ImageStatusRequest{}
	if redactRequest(other) != any(other) {
		t.Error("other requests must pass through")
	}
}
