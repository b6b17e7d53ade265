package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/test/e2e/framework"
)

// mirrorImage is pulled by its upstream name; the stack's hosts.toml tree
// (CERTS_D) maps its registry to the local test registry.
const (
	mirrorImage     = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
	mirrorImageRepo = "registry.k8s.io/e2e-test-images/busybox"
	// mirrorAlias is the same image under a Docker Hub short name
	// (docker.io/library/busybox:latest) in the test image set.
	mirrorAlias     = "busybox"
	mirrorAliasFull = "docker.io/library/busybox:latest"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func pullImage(ctx context.Context, c runtimeapi.ImageServiceClient, ref string, auth *runtimeapi.AuthConfig) (string, error) {
	resp, err := c.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}, Auth: auth})
	if err != nil {
		return "", err
	}
	return resp.GetImageRef(), nil
}

func mustPull(t *testing.T, c runtimeapi.ImageServiceClient, ref string, auth *runtimeapi.AuthConfig) string {
	t.Helper()
	id, err := pullImage(ctxT(t), c, ref, auth)
	if err != nil {
		t.Fatalf("PullImage(%q): %v", ref, err)
	}
	if !strings.HasPrefix(id, "sha256:") {
		t.Fatalf("PullImage(%q) returned image ref %q, want a sha256 image ID", ref, id)
	}
	return id
}

func imageStatus(t *testing.T, c runtimeapi.ImageServiceClient, ref string) *runtimeapi.Image {
	t.Helper()
	resp, err := c.ImageStatus(ctxT(t), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		t.Fatalf("ImageStatus(%q): %v", ref, err)
	}
	return resp.GetImage()
}

func listImages(t *testing.T, c runtimeapi.ImageServiceClient, filter string) []*runtimeapi.Image {
	t.Helper()
	req := &runtimeapi.ListImagesRequest{}
	if filter != "" {
		req.Filter = &runtimeapi.ImageFilter{Image: &runtimeapi.ImageSpec{Image: filter}}
	}
	resp, err := c.ListImages(ctxT(t), req)
	if err != nil {
		t.Fatalf("ListImages(%q): %v", filter, err)
	}
	return resp.GetImages()
}

func removeImage(t *testing.T, c runtimeapi.ImageServiceClient, ref string) {
	t.Helper()
	if _, err := c.RemoveImage(ctxT(t), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
		t.Fatalf("RemoveImage(%q): %v", ref, err)
	}
}

func wantCode(t *testing.T, what string, err error, want ...codes.Code) {
	t.Helper()
	got := status.Code(err)
	if !slices.Contains(want, got) {
		t.Fatalf("%s: got code %s (%v), want one of %v", what, got, err, want)
	}
	t.Logf("%s: %s: %s", what, got, status.Convert(err).Message())
}

func findImage(imgs []*runtimeapi.Image, id string) *runtimeapi.Image {
	for _, i := range imgs {
		if i.GetId() == id {
			return i
		}
	}
	return nil
}

// TestImagePullThroughMirror pulls by upstream names that the hosts.toml
// tree redirects to the local registry, and checks what every lookup
// reports for the image.
func TestImagePullThroughMirror(t *testing.T) {
	env := framework.RequireStack(t, "ContainerdAddress", "CertsD", "ImagesManifest")
	manifest := framework.LoadImagesManifest(t, env.ImagesManifest)
	digest, ok := manifest.Digest(mirrorImage)
	if !ok {
		t.Skipf("%s is not in the test image set", mirrorImage)
	}
	d := framework.StartDaemon(t, env, framework.DaemonOptions{RegistryConfigPath: env.CertsD})
	c := d.ImageClient()

	id := mustPull(t, c, mirrorImage, nil)
	st := imageStatus(t, c, mirrorImage)
	if st == nil || st.Id != id {
		t.Fatalf("ImageStatus(%q) = %v, want id %s", mirrorImage, st, id)
	}
	if want := []string{mirrorImage}; !slices.Equal(st.RepoTags, want) {
		t.Errorf("RepoTags = %v, want %v", st.RepoTags, want)
	}
	repoDigest := mirrorImageRepo + "@" + digest
	if want := []string{repoDigest}; !slices.Equal(st.RepoDigests, want) {
		t.Errorf("RepoDigests = %v, want %v", st.RepoDigests, want)
	}
	if st.Size == 0 {
		t.Error("Size is 0")
	}

	// The same image under a docker-style short name: one image, two tags.
	if aliasDigest, ok := manifest.Digest(mirrorAliasFull); ok && aliasDigest == digest {
		if got := mustPull(t, c, mirrorAlias, nil); got != id {
			t.Fatalf("PullImage(%q) = %s, want the same image %s", mirrorAlias, got, id)
		}
		st = imageStatus(t, c, mirrorAlias)
		if want := []string{mirrorAliasFull, mirrorImage}; st == nil || !slices.Equal(st.RepoTags, want) {
			t.Fatalf("after pulling the alias: RepoTags = %v, want %v", st.GetRepoTags(), want)
		}
		if len(st.RepoDigests) != 2 {
			t.Errorf("RepoDigests = %v, want one per repository", st.RepoDigests)
		}
	}

	// Every kind of name reports the identical status (critest "image status
	// should support all kinds of references").
	names := append(append([]string{id, strings.TrimPrefix(id, "sha256:")[:12]}, st.RepoTags...), st.RepoDigests...)
	for _, n := range names {
		if got := imageStatus(t, c, n); !proto.Equal(got, st) {
			t.Errorf("ImageStatus(%q) = %v, want %v", n, got, st)
		}
	}

	// Pulling by digest resolves to the same image.
	if got := mustPull(t, c, repoDigest, nil); got != id {
		t.Errorf("PullImage(%q) = %s, want %s", repoDigest, got, id)
	}

	// Verbose status: the image spec and chain ID, like containerd's CRI.
	resp, err := c.ImageStatus(ctxT(t), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: id}, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		ChainID   string `json:"chainID"`
		ImageSpec struct {
			Architecture string `json:"architecture"`
			RootFS       struct {
				DiffIDs []string `json:"diff_ids"`
			} `json:"rootfs"`
		} `json:"imageSpec"`
	}
	if err := json.Unmarshal([]byte(resp.GetInfo()["info"]), &info); err != nil {
		t.Fatalf("verbose info %q: %v", resp.GetInfo()["info"], err)
	}
	if !strings.HasPrefix(info.ChainID, "sha256:") || len(info.ImageSpec.RootFS.DiffIDs) == 0 || info.ImageSpec.Architecture == "" {
		t.Errorf("verbose info = %s", resp.GetInfo()["info"])
	}

	// List, unfiltered and filtered.
	if img := findImage(listImages(t, c, ""), id); !proto.Equal(img, st) {
		t.Errorf("ListImages entry = %v, want %v", img, st)
	}
	for _, f := range []string{mirrorImage, id, mirrorImageRepo} {
		if got := listImages(t, c, f); len(got) != 1 || got[0].Id != id {
			t.Errorf("ListImages(filter %q) = %v, want only %s", f, got, id)
		}
	}
	if got := listImages(t, c, "registry.k8s.io/no/such:image"); len(got) != 0 {
		t.Errorf("ListImages(unknown filter) = %v", got)
	}

	// An unknown tag behind the mirror.
	_, err = pullImage(ctxT(t), c, mirrorImageRepo+":no-such-tag", nil)
	wantCode(t, "pull unknown tag", err, codes.NotFound)

	removeImage(t, c, id)
	for _, n := range names {
		if got := imageStatus(t, c, n); got != nil {
			t.Errorf("ImageStatus(%q) after removal = %v", n, got)
		}
	}
}

// TestImageRemoveByEachName removes an image by ID, short ID, each tag and
// digest, and checks that every name goes and that removal is idempotent.
func TestImageRemoveByEachName(t *testing.T) {
	env := framework.RequireStack(t, "ContainerdAddress")
	reg := framework.StartTestRegistry(t, "", "")
	pushed := reg.PushRandomImage(t, "e2e/remove:one", 1, 2048, "")
	img2 := reg.PushRandomImage(t, "e2e/other:x", 1, 2048, "")
	// The same image under a second tag and in a second repository.
	_ = reg.Push(t, "e2e/remove:two", reg.Fetch(t, pushed.Ref))
	_ = reg.Push(t, "e2e/mirror:one", reg.Fetch(t, pushed.Ref))
	d := framework.StartDaemon(t, env, framework.DaemonOptions{})
	c := d.ImageClient()

	refs := []string{pushed.Ref, reg.Host + "/e2e/remove:two", reg.Host + "/e2e/mirror:one"}
	for _, tc := range []struct {
		name string
		by   func(st *runtimeapi.Image) string
	}{
		{"id", func(st *runtimeapi.Image) string { return st.Id }},
		{"short id", func(st *runtimeapi.Image) string { return strings.TrimPrefix(st.Id, "sha256:")[:12] }},
		{"first tag", func(st *runtimeapi.Image) string { return st.RepoTags[0] }},
		{"tag in another repository", func(st *runtimeapi.Image) string { return st.RepoTags[2] }},
		{"digest", func(st *runtimeapi.Image) string { return st.RepoDigests[0] }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range refs {
				if id := mustPull(t, c, r, nil); id != pushed.ConfigDigest {
					t.Fatalf("PullImage(%q) = %s, want %s", r, id, pushed.ConfigDigest)
				}
			}
			otherID := mustPull(t, c, img2.Ref, nil)
			st := imageStatus(t, c, pushed.Ref)
			if st == nil || len(st.RepoTags) != 3 || len(st.RepoDigests) != 2 {
				t.Fatalf("status before removal = %v, want 3 tags and 2 digests", st)
			}
			all := append(append([]string{st.Id}, st.RepoTags...), st.RepoDigests...)
			removeImage(t, c, tc.by(st))
			for _, n := range all {
				if got := imageStatus(t, c, n); got != nil {
					t.Errorf("ImageStatus(%q) after removal = %v", n, got)
				}
			}
			if findImage(listImages(t, c, ""), st.Id) != nil {
				t.Error("removed image still listed")
			}
			if findImage(listImages(t, c, ""), otherID) == nil {
				t.Error("an unrelated image was removed too")
			}
			removeImage(t, c, tc.by(st)) // idempotent
			removeImage(t, c, st.Id)
		})
	}
}

// TestImagePullWithAuth pulls from a registry that requires basic auth,
// reached over plain HTTP on a loopback port without any hosts.toml.
func TestImagePullWithAuth(t *testing.T) {
	env := framework.RequireStack(t, "ContainerdAddress")
	reg := framework.StartTestRegistry(t, "alice", "s3cret")
	pushed := reg.PushRandomImage(t, "private/app:v1", 2, 4096, "1234:5678")
	metricsAddr := freeAddr(t)
	d := framework.StartDaemon(t, env, framework.DaemonOptions{ExtraArgs: []string{"--metrics-addr", metricsAddr}})
	c := d.ImageClient()
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

	for _, tc := range []struct {
		name string
		auth *runtimeapi.AuthConfig
		want codes.Code
	}{
		{"no credentials", nil, codes.Unauthenticated},
		{"wrong password", &runtimeapi.AuthConfig{Username: "alice", Password: "wrong"}, codes.Unauthenticated},
		{"wrong auth field", &runtimeapi.AuthConfig{Auth: b64("bob:s3cret")}, codes.Unauthenticated},
		{"credentials for another server", &runtimeapi.AuthConfig{Username: "alice", Password: "s3cret", ServerAddress: "registry.example.com"}, codes.Unauthenticated},
		{"malformed auth field", &runtimeapi.AuthConfig{Auth: "not base64!"}, codes.InvalidArgument},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pullImage(ctxT(t), c, pushed.Ref, tc.auth)
			wantCode(t, tc.name, err, tc.want)
			if got := imageStatus(t, c, pushed.Ref); got != nil {
				t.Fatalf("failed pull left an image: %v", got)
			}
		})
	}

	for _, tc := range []struct {
		name string
		auth *runtimeapi.AuthConfig
	}{
		{"username and password", &runtimeapi.AuthConfig{Username: "alice", Password: "s3cret"}},
		{"auth field with server address", &runtimeapi.AuthConfig{Auth: b64("alice:s3cret"), ServerAddress: "http://" + reg.Host}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := mustPull(t, c, pushed.Ref, tc.auth)
			if id != pushed.ConfigDigest {
				t.Fatalf("image ID %s, want config digest %s", id, pushed.ConfigDigest)
			}
			st := imageStatus(t, c, pushed.Ref)
			if st.GetUid().GetValue() != 1234 || st.GetUsername() != "" {
				t.Errorf("uid %v username %q, want uid 1234", st.GetUid(), st.GetUsername())
			}
			if want := []string{pushed.Repo + "@" + pushed.ManifestDigest}; !slices.Equal(st.RepoDigests, want) {
				t.Errorf("RepoDigests %v, want %v", st.RepoDigests, want)
			}
			removeImage(t, c, pushed.Ref)
		})
	}

	m := scrapeMetrics(t, metricsAddr)
	for _, want := range []string{
		`cri_containerd_image_pulls_total{result="success"} 2`,
		`cri_containerd_image_pulls_total{result="failure"} 4`, // the malformed AuthConfig never reached the pull
		`cri_containerd_image_pull_duration_seconds_count{result="success"} 2`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if !strings.Contains(m, "cri_containerd_image_pull_bytes_total ") {
		t.Error("metrics lack cri_containerd_image_pull_bytes_total")
	}
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func scrapeMetrics(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scraping metrics: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestImageBadRequests checks the error codes of malformed and impossible requests.
func TestImageBadRequests(t *testing.T) {
	env := framework.RequireStack(t, "ContainerdAddress")
	reg := framework.StartTestRegistry(t, "", "")
	d := framework.StartDaemon(t, env, framework.DaemonOptions{})
	c := d.ImageClient()
	ctx := ctxT(t)

	for _, ref := range []string{"", "-leading-dash", "busybox:", "busybox@sha256:123", "a//b", "UPPER"} {
		_, err := pullImage(ctx, c, ref, nil)
		wantCode(t, fmt.Sprintf("PullImage(%q)", ref), err, codes.InvalidArgument)
	}
	_, err := c.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ""}})
	wantCode(t, "ImageStatus(\"\")", err, codes.InvalidArgument)

	// Absent images: status is empty, removal succeeds (twice).
	for _, ref := range []string{"registry.k8s.io/no/such:image", "sha256:" + strings.Repeat("0", 64), strings.Repeat("0", 64)} {
		if got := imageStatus(t, c, ref); got != nil {
			t.Errorf("ImageStatus(%q) = %v, want nil", ref, got)
		}
		removeImage(t, c, ref)
		removeImage(t, c, ref)
	}

	// Unknown tag in a reachable registry.
	reg.PushRandomImage(t, "e2e/exists:yes", 1, 16, "")
	_, err = pullImage(ctx, c, reg.Host+"/e2e/exists:no", nil)
	wantCode(t, "pull unknown tag", err, codes.NotFound)

	// A registry that is not listening.
	_, err = pullImage(ctx, c, freeAddr(t)+"/e2e/x:y", nil)
	wantCode(t, "pull from an unreachable registry", err, codes.Unavailable)
}

// TestImagePullProgressTimeout pulls from a registry that stops sending
// bytes: the daemon must cancel the pull after its progress timeout.
func TestImagePullProgressTimeout(t *testing.T) {
	env := framework.RequireStack(t, "ContainerdAddress")
	reg := framework.StartTestRegistry(t, "", "")
	pushed := reg.PushRandomImage(t, "e2e/stall:1", 1, 1<<20, "")
	d := framework.StartDaemon(t, env, framework.DaemonOptions{ExtraArgs: []string{"--image-pull-progress-timeout", "2s"}})
	c := d.ImageClient()

	reg.StallBlobs.Store(true)
	start := time.Now()
	_, err := pullImage(ctxT(t), c, pushed.Ref, nil)
	took := time.Since(start)
	wantCode(t, "stalled pull", err, codes.DeadlineExceeded)
	if !strings.Contains(status.Convert(err).Message(), "no progress") {
		t.Errorf("message %q does not say the pull made no progress", status.Convert(err).Message())
	}
	if took > 30*time.Second {
		t.Errorf("stalled pull took %s to fail with a 2s progress timeout", took)
	}

	// The same pull works once the registry delivers again.
	reg.StallBlobs.Store(false)
	if id := mustPull(t, c, pushed.Ref, nil); id != pushed.ConfigDigest {
		t.Errorf("retry pulled %s, want %s", id, pushed.ConfigDigest)
	}
	waitNoLeases(t, env.ContainerdAddress, d.Opts.Namespace)
}

// TestImageConcurrentPulls pulls one reference from many clients at once.
func TestImageConcurrentPulls(t *testing.T) {
	env := framework.RequireStack(t, "ContainerdAddress")
	reg := framework.StartTestRegistry(t, "", "")
	pushed := reg.PushRandomImage(t, "e2e/concurrent:1", 3, 256<<10, "")
	d := framework.StartDaemon(t, env, framework.DaemonOptions{})
	c := d.ImageClient()

	var wg sync.WaitGroup
	ids := make([]string, 6)
	errs := make([]error, 6)
	for i := range ids {
		wg.Go(func() { ids[i], errs[i] = pullImage(ctxT(t), c, pushed.Ref, nil) })
	}
	wg.Wait()
	for i := range ids {
		if errs[i] != nil || ids[i] != pushed.ConfigDigest {
			t.Errorf("pull %d: %s, %v", i, ids[i], errs[i])
		}
	}
	if imgs := listImages(t, c, ""); len(imgs) != 1 || len(imgs[0].RepoTags) != 1 {
		t.Errorf("ListImages = %v, want the one image with one tag", imgs)
	}

	// Callers that give up (deadline) cancel the shared pull once all are
	// gone; nothing is left pinned.
	slow := reg.PushRandomImage(t, "e2e/concurrent:2", 1, 1<<20, "")
	reg.StallBlobs.Store(true)
	for i := range 3 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(300+100*i)*time.Millisecond)
			defer cancel()
			_, errs[i] = pullImage(ctx, c, slow.Ref, nil)
		})
	}
	wg.Wait()
	for i := range 3 {
		if status.Code(errs[i]) != codes.DeadlineExceeded {
			t.Errorf("abandoned pull %d: %v, want DeadlineExceeded", i, errs[i])
		}
	}
	// Once every caller is gone the shared pull is cancelled and its lease
	// released (a caller arriving before the last one left would have
	// joined the still running pull: wait for it to end first).
	waitNoLeases(t, env.ContainerdAddress, d.Opts.Namespace)
	reg.StallBlobs.Store(false)
	if id := mustPull(t, c, slow.Ref, nil); id != slow.ConfigDigest {
		t.Errorf("pull after abandoned pulls: %s", id)
	}
	waitNoLeases(t, env.ContainerdAddress, d.Opts.Namespace)
}

func waitNoLeases(t *testing.T, address, ns string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l := framework.Leases(t, address, ns)
		if len(l) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pulls left leases behind: %v", l)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestImageFsInfo checks that the snapshotter filesystem usage is real and
// follows pulls and removals.
func TestImageFsInfo(t *testing.T) {
	env := framework.RequireStack(t, "ContainerdAddress")
	reg := framework.StartTestRegistry(t, "", "")
	pushed := reg.PushRandomImage(t, "e2e/fsinfo:1", 2, 1<<20, "")
	d := framework.StartDaemon(t, env, framework.DaemonOptions{})
	c := d.ImageClient()

	fs := func() (*runtimeapi.FilesystemUsage, *runtimeapi.FilesystemUsage) {
		resp, err := c.ImageFsInfo(ctxT(t), &runtimeapi.ImageFsInfoRequest{})
		if err != nil {
			t.Fatalf("ImageFsInfo: %v", err)
		}
		if len(resp.ImageFilesystems) == 0 || len(resp.ContainerFilesystems) == 0 {
			t.Fatalf("ImageFsInfo = %v, want image and container filesystems", resp)
		}
		return resp.ImageFilesystems[0], resp.ContainerFilesystems[0]
	}
	before, _ := fs()
	mustPull(t, c, pushed.Ref, nil)
	after, ctr := fs()
	t.Logf("image fs before pull: %d bytes %d inodes; after: %d bytes %d inodes at %s",
		before.UsedBytes.GetValue(), before.InodesUsed.GetValue(), after.UsedBytes.GetValue(), after.InodesUsed.GetValue(), after.FsId.GetMountpoint())
	if after.UsedBytes.GetValue() < before.UsedBytes.GetValue()+2<<20 || after.InodesUsed.GetValue() == 0 {
		t.Errorf("usage after pulling 2 MiB of layers: %v (before %v)", after, before)
	}
	if after.Timestamp <= 0 {
		t.Errorf("timestamp %d", after.Timestamp)
	}
	mp := after.FsId.GetMountpoint()
	if fi, err := os.Stat(mp); err != nil || !fi.IsDir() {
		t.Errorf("mountpoint %q is not a directory: %v", mp, err)
	}
	if ctr.FsId.GetMountpoint() != mp {
		t.Errorf("container filesystem %q, want the image filesystem %q", ctr.FsId.GetMountpoint(), mp)
	}

	removeImage(t, c, pushed.Ref)
	deadline := time.Now().Add(30 * time.Second)
	for {
		now, _ := fs()
		if now.UsedBytes.GetValue() <= before.UsedBytes.GetValue() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("usage %d did not drop back to %d after removing the image", now.UsedBytes.GetValue(), before.UsedBytes.GetValue())
		}
		time.Sleep(time.Second)
	}
}

// TestImageRestartRecovery restarts the daemon and finds every image, with
// identical status, and the sandbox image still pinned.
func TestImageRestartRecovery(t *testing.T) {
	env := framework.RequireStack(t, "ContainerdAddress")
	reg := framework.StartTestRegistry(t, "", "")
	a := reg.PushRandomImage(t, "e2e/restart-a:1", 1, 4096, "www-data")
	_ = reg.Push(t, "e2e/restart-a:2", reg.Fetch(t, a.Ref))
	b := reg.PushRandomImage(t, "e2e/restart-b:1", 1, 4096, "")
	pause := reg.PushRandomImage(t, "e2e/pause:1", 1, 4096, "65535:65535")
	d := framework.StartDaemon(t, env, framework.DaemonOptions{SandboxImage: pause.Ref})
	c := d.ImageClient()

	mustPull(t, c, a.Ref, nil)
	mustPull(t, c, reg.Host+"/e2e/restart-a:2", nil)
	mustPull(t, c, b.Repo+"@"+b.ManifestDigest, nil) // by digest only: no tag
	mustPull(t, c, pause.Ref, nil)
	names := []string{a.Ref, reg.Host + "/e2e/restart-a:2", a.ConfigDigest, b.Repo + "@" + b.ManifestDigest, b.ConfigDigest, pause.Ref}

	beforeList := listImages(t, c, "")
	before := map[string]*runtimeapi.Image{}
	for _, n := range names {
		before[n] = imageStatus(t, c, n)
	}
	if p := before[pause.Ref]; p == nil || !p.Pinned || p.GetUid().GetValue() != 65535 {
		t.Errorf("sandbox image status %v, want pinned with uid 65535", p)
	}
	if st := before[a.Ref]; st.GetUsername() != "www-data" || st.Uid != nil || st.Pinned {
		t.Errorf("image a status %v, want username www-data, not pinned", st)
	}
	if st := before[b.ConfigDigest]; len(st.GetRepoTags()) != 0 || len(st.GetRepoDigests()) != 1 {
		t.Errorf("image pulled by digest: %v, want no tags and one digest", st)
	}

	d.Restart()
	c = d.ImageClient()

	afterList := listImages(t, c, "")
	if len(afterList) != len(beforeList) {
		t.Fatalf("after restart %d images, before %d", len(afterList), len(beforeList))
	}
	for i := range beforeList {
		if !proto.Equal(beforeList[i], afterList[i]) {
			t.Errorf("ListImages[%d] after restart = %v, before %v", i, afterList[i], beforeList[i])
		}
	}
	for _, n := range names {
		if got := imageStatus(t, c, n); !proto.Equal(got, before[n]) {
			t.Errorf("ImageStatus(%q) after restart = %v, before %v", n, got, before[n])
		}
	}
}

// TestImageExternalChanges changes image records behind the daemon's back
// (as ctr would): the daemon follows containerd's image events.
func TestImageExternalChanges(t *testing.T) {
	env := framework.RequireStack(t, "ContainerdAddress")
	reg := framework.StartTestRegistry(t, "", "")
	pushed := reg.PushRandomImage(t, "e2e/external:1", 1, 4096, "")
	d := framework.StartDaemon(t, env, framework.DaemonOptions{})
	c := d.ImageClient()
	id := mustPull(t, c, pushed.Ref, nil)
	cli, ctx := framework.ContainerdClient(t, env.ContainerdAddress, d.Opts.Namespace)
	is := cli.ImageService()

	eventually := func(what string, ok func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !ok() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not seen within 10s", what)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// A name added in containerd shows up as a repo tag of the image.
	rec, err := is.Get(ctx, pushed.Ref)
	if err != nil {
		t.Fatal(err)
	}
	const added = "example.test/added:1"
	rec.Name = added
	if _, err := is.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	eventually("added name", func() bool {
		st := imageStatus(t, c, added)
		return st != nil && st.Id == id && slices.Contains(st.RepoTags, added)
	})

	// A name deleted in containerd goes; the image stays under its other names.
	if err := is.Delete(ctx, pushed.Ref); err != nil {
		t.Fatal(err)
	}
	eventually("deleted name", func() bool { return imageStatus(t, c, pushed.Ref) == nil })
	if st := imageStatus(t, c, id); st == nil || slices.Contains(st.RepoTags, pushed.Ref) {
		t.Fatalf("image after deleting one name: %v", st)
	}

	// Everything deleted in containerd: the image is gone.
	all, err := is.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range all {
		if err := is.Delete(ctx, r.Name); err != nil {
			t.Fatal(err)
		}
	}
	eventually("image removal", func() bool { return imageStatus(t, c, id) == nil && len(listImages(t, c, "")) == 0 })
}

// TestImageServiceOnStackDaemon runs non-destructive checks against the
// stack's shared daemon (CRI_ENDPOINT), the way kubelet talks to it.
func TestImageServiceOnStackDaemon(t *testing.T) {
	env := framework.RequireStack(t, "CRIEndpoint", "SandboxImage")
	if _, err := os.Stat(strings.TrimPrefix(env.CRIEndpoint, "unix://")); err != nil {
		t.Skipf("stack daemon not running: %v", err)
	}
	c := runtimeapi.NewImageServiceClient(framework.DialCRI(t, env.CRIEndpoint))
	id := mustPull(t, c, env.SandboxImage, nil)
	st := imageStatus(t, c, env.SandboxImage)
	if st == nil || st.Id != id || !st.Pinned {
		t.Errorf("sandbox image status %v, want id %s and pinned", st, id)
	}
	if findImage(listImages(t, c, ""), id) == nil {
		t.Error("sandbox image not listed")
	}
	resp, err := c.ImageFsInfo(ctxT(t), &runtimeapi.ImageFsInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.ImageFilesystems) == 0 || resp.ImageFilesystems[0].UsedBytes.GetValue() == 0 || resp.ImageFilesystems[0].FsId.GetMountpoint() == "" {
		t.Errorf("ImageFsInfo = %v", resp)
	}
}
