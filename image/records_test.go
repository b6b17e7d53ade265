package image

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/platforms"
	"github.com/opencontainers/image-spec/identity"
	"github.com/prometheus/client_golang/prometheus"
)

func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(namespaces.WithNamespace(context.Background(), "test"), time.Minute)
	tb.Cleanup(cancel)
	return ctx
}

func wantCalls(t *testing.T, what string, got map[string]int, want map[string]int) {
	t.Helper()
	for k, v := range got {
		if v == 0 {
			delete(got, k)
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("%s: containerd calls %v, want %v", what, got, want)
	}
}

// TestComputeInfoMatchesClientImage: the facts read once per blob are those
// containerd's client.Image reports (what imageInfo used before).
func TestComputeInfoMatchesClientImage(t *testing.T) {
	e := newTestEnv(t, Options{})
	ctx := testCtx(t)
	for name, img := range map[string]testImage{
		"manifest": makeManifest(t, e.cs, "m", 3, platforms.DefaultSpec()),
		"index":    makeIndex(t, e.cs, "i"),
	} {
		t.Run(name, func(t *testing.T) {
			rec := images.Image{Name: "example.test/" + name + ":1", Target: img.target}
			ci := containerd.NewImageWithPlatform(e.cli, rec, platforms.Default())
			cfg, err := ci.Config(ctx)
			if err != nil {
				t.Fatal(err)
			}
			spec, err := ci.Spec(ctx)
			if err != nil {
				t.Fatal(err)
			}
			diffIDs, err := ci.RootFS(ctx)
			if err != nil {
				t.Fatal(err)
			}
			size, err := ci.Size(ctx)
			if err != nil {
				t.Fatal(err)
			}
			e.calls()
			got, err := computeInfo(ctx, &blobMemo{read: e.svc.readBlob, info: e.svc.content}, rec.Name, rec.Target)
			if err != nil {
				t.Fatal(err)
			}
			want := Image{ID: cfg.Digest.String(), ChainID: identity.ChainID(diffIDs).String(), Size: size, Config: spec}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("computeInfo = %+v\nclient.Image says %+v", got, want)
			}
			if got.ID != img.config.Digest.String() || got.Size != img.size || got.Config.Config.User != img.user {
				t.Errorf("computeInfo = %+v, want ID %s size %d user %s", got, img.config.Digest, img.size, img.user)
			}
			blobs := 2 // manifest, config
			if name == "index" {
				blobs = 3
			}
			wantCalls(t, "computeInfo", e.calls(), map[string]int{"Content.ReaderAt": blobs})
		})
	}
}

func TestComputeInfoMissingContent(t *testing.T) {
	e := newTestEnv(t, Options{})
	ctx := testCtx(t)
	img := makeManifest(t, e.cs, "gone", 1, platforms.DefaultSpec())
	if err := e.cs.Delete(ctx, img.config.Digest); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.imageInfo(ctx, "x", img.target, false); err == nil || !strings.Contains(err.Error(), "reading config of") {
		t.Fatalf("imageInfo with the config blob gone = %v, want a config read error", err)
	}
}

func TestPullNamesImage(t *testing.T) {
	e := newTestEnv(t, Options{})
	ctx := testCtx(t)
	img := makeManifest(t, e.cs, "a", 2, platforms.DefaultSpec())
	const ref = "example.test/a:1"
	digestRef := "example.test/a@" + img.manifest.Digest.String()
	id := img.config.Digest.String()

	got := e.pull(t, ctx, ref, img.target)
	wantCalls(t, "first pull", e.calls(), map[string]int{"Images.Create": 2, "Content.ReaderAt": 2})
	want := []string{digestRef, ref, id}
	sort.Strings(want)
	if got.ID != id || !slices.Equal(got.References, want) || !slices.Equal(got.RepoTags, []string{ref}) ||
		!slices.Equal(got.RepoDigests, []string{digestRef}) || got.Size != img.size || got.Config.Config.User != img.user ||
		got.ChainID != identity.ChainID(img.diffIDs).String() || got.Pinned {
		t.Fatalf("pulled image = %+v", got)
	}
	for _, n := range want {
		r, err := e.is.Get(ctx, n)
		if err != nil || r.Target.Digest != img.target.Digest || r.Labels[ImageLabelKey] != ImageLabelValue {
			t.Errorf("record %q = %+v, %v", n, r, err)
		}
	}
	e.calls()
	if n := e.deliver(ctx); n != 3 {
		t.Errorf("first pull published %d events, want 3", n)
	}
	// Each event refreshes its name (one read; the facts are known).
	wantCalls(t, "events of the first pull", e.calls(), map[string]int{"Images.Get": 3})

	// Re-pull: client.Pull replaces the record ref; the other names are
	// read (the cache knows them), not written.
	again := e.pull(t, ctx, ref, img.target)
	wantCalls(t, "re-pull", e.calls(), map[string]int{"Images.Get": 2})
	if !reflect.DeepEqual(again, got) {
		t.Errorf("re-pulled image = %+v, first %+v", again, got)
	}
	if n := e.deliver(ctx); n != 1 {
		t.Errorf("re-pull published %d events, want 1", n)
	}
	wantCalls(t, "events of the re-pull", e.calls(), map[string]int{"Images.Get": 1})

	// Remove: the known names, a list of others, no re-reads.
	if err := e.svc.Remove(ctx, ref); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, "remove", e.calls(), map[string]int{"Images.List": 1, "Images.Delete": 3})
	if n := e.deliver(ctx); n != 3 {
		t.Errorf("remove published %d events, want 3", n)
	}
	wantCalls(t, "events of the remove", e.calls(), map[string]int{"Images.Get": 3})
	if _, err := e.svc.Get(id); err == nil || len(e.svc.List()) != 0 {
		t.Errorf("image still cached after removal: %v", e.svc.List())
	}
	if recs, _ := e.is.List(ctx); len(recs) != 0 {
		t.Errorf("records left after removal: %v", recs)
	}

	// Pulled again (the content is still there): the facts are remembered.
	e.calls()
	again = e.pull(t, ctx, ref, img.target)
	wantCalls(t, "pull after removal", e.calls(), map[string]int{"Images.Create": 2})
	if !reflect.DeepEqual(again, got) {
		t.Errorf("image pulled after removal = %+v, first %+v", again, got)
	}
}

func TestPullByDigestAndPinned(t *testing.T) {
	e := newTestEnv(t, Options{PinnedImages: []string{"example.test/pause:1"}})
	ctx := testCtx(t)
	a := makeIndex(t, e.cs, "a")
	byDigest := "example.test/a@" + a.target.Digest.String()
	got := e.pull(t, ctx, byDigest, a.target)
	if !slices.Equal(got.References, []string{byDigest, a.config.Digest.String()}) || len(got.RepoTags) != 0 || got.Size != a.size {
		t.Errorf("image pulled by digest = %+v", got)
	}
	p := makeManifest(t, e.cs, "p", 1, platforms.DefaultSpec())
	got = e.pull(t, ctx, "example.test/pause:1", p.target)
	if !got.Pinned {
		t.Errorf("pinned image = %+v", got)
	}
	for _, n := range got.References {
		if r, _ := e.is.Get(ctx, n); r.Labels[PinnedLabelKey] != PinnedLabelValue {
			t.Errorf("record %q labels %v, want the pinned label", n, r.Labels)
		}
	}
	e.deliver(ctx)
	e.calls()
	if st, _ := e.svc.Get("example.test/pause:1"); !st.Pinned {
		t.Errorf("pinned image after events = %+v", st)
	}
}

// TestPullFixesForeignRecords: records of the image's names that exist with
// another target or without the labels are updated, keeping other labels.
func TestPullFixesForeignRecords(t *testing.T) {
	e := newTestEnv(t, Options{})
	ctx := testCtx(t)
	a := makeManifest(t, e.cs, "a", 1, platforms.DefaultSpec())
	b := makeManifest(t, e.cs, "b", 1, platforms.DefaultSpec())
	// Made by someone else: the ID record without our label, the digest
	// record pointing elsewhere (not possible for real, but tests the update).
	mustCreate := func(name string, r images.Image) {
		r.Name = name
		if _, err := e.is.Create(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	mustCreate(a.config.Digest.String(), images.Image{Target: a.target, Labels: map[string]string{"other": "x"}})
	digestRef := "example.test/a@" + a.manifest.Digest.String()
	mustCreate(digestRef, images.Image{Target: b.target})
	e.deliver(ctx) // the watcher caches them
	if st, err := e.svc.Get(digestRef); err != nil || st.ID != b.config.Digest.String() {
		t.Fatalf("foreign record not cached: %+v %v", st, err)
	}
	e.calls()

	got := e.pull(t, ctx, "example.test/a:1", a.target)
	calls := e.calls()
	// The facts of a's target are known from the foreign ID record.
	wantCalls(t, "pull over foreign records", calls, map[string]int{"Images.Get": 2, "Images.Update": 2})
	if got.ID != a.config.Digest.String() || len(got.References) != 3 {
		t.Errorf("pulled = %+v", got)
	}
	if _, err := e.svc.Get(b.config.Digest.String()); err == nil {
		t.Errorf("image b still cached though its only name moved")
	}
	r, _ := e.is.Get(ctx, a.config.Digest.String())
	if r.Labels["other"] != "x" || r.Labels[ImageLabelKey] != ImageLabelValue {
		t.Errorf("ID record labels %v, want other=x kept and ours added", r.Labels)
	}
	if r, _ := e.is.Get(ctx, digestRef); r.Target.Digest != a.target.Digest {
		t.Errorf("digest record target %s, want %s", r.Target.Digest, a.target.Digest)
	}
	e.calls()
	e.deliver(ctx)
	wantCalls(t, "events", e.calls(), map[string]int{"Images.Get": 3})
}

// TestForeignChangesAreFollowed: events of other clients' writes are
// refreshed, also when they interleave with the service's own writes.
func TestForeignChangesAreFollowed(t *testing.T) {
	e := newTestEnv(t, Options{})
	ctx := testCtx(t)
	a := makeManifest(t, e.cs, "a", 1, platforms.DefaultSpec())
	b := makeManifest(t, e.cs, "b", 1, platforms.DefaultSpec())
	const ref = "example.test/a:1"
	id := e.pull(t, ctx, ref, a.target).ID

	// Someone re-points ref at b before our events are seen.
	if _, err := e.is.Update(ctx, images.Image{Name: ref, Target: b.target}, "target"); err != nil {
		t.Fatal(err)
	}
	// And adds a name.
	if _, err := e.is.Create(ctx, images.Image{Name: "example.test/added:1", Target: a.target}); err != nil {
		t.Fatal(err)
	}
	e.calls()
	e.deliver(ctx)
	// The pull's three events and the two foreign ones; b's facts are read.
	wantCalls(t, "events", e.calls(), map[string]int{"Images.Get": 5, "Content.ReaderAt": 2})
	if st, _ := e.svc.Get(ref); st.ID != b.config.Digest.String() {
		t.Errorf("%s cached as %s, want %s", ref, st.ID, b.config.Digest)
	}
	if st, _ := e.svc.Get(id); !slices.Contains(st.RepoTags, "example.test/added:1") || slices.Contains(st.RepoTags, ref) {
		t.Errorf("image a = %+v, want the added tag and not %s", st, ref)
	}

	// Someone deletes a name; the event comes while our removal of the
	// image is deleting the same name.
	var fired atomic.Bool
	e.is.setHooks(func(name string) {
		if name == "example.test/added:1" && fired.CompareAndSwap(false, true) {
			if err := e.is.Delete(ctx, name); err != nil {
				t.Error(err)
			}
			e.deliver(ctx) // while our delete of it is in flight
		}
	}, nil)
	if err := e.svc.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	e.is.setHooks(nil, nil)
	e.deliver(ctx)
	if _, err := e.svc.Get(id); err == nil {
		t.Errorf("image a still cached")
	}
	if st, err := e.svc.Get(ref); err != nil || st.ID != b.config.Digest.String() {
		t.Errorf("image b = %+v, %v", st, err)
	}
}

// TestEventDuringOwnWrite: the echo of an own write that arrives before the
// write returns refreshes the name to what the write put there, so the
// writer's own cache update agrees with it and reads nothing more; later
// foreign events are followed.
func TestEventDuringOwnWrite(t *testing.T) {
	e := newTestEnv(t, Options{})
	ctx := testCtx(t)
	a := makeManifest(t, e.cs, "a", 1, platforms.DefaultSpec())
	e.is.setHooks(nil, func(string) { e.deliver(ctx) }) // echo before the call returns
	got := e.pull(t, ctx, "example.test/a:1", a.target)
	e.is.setHooks(nil, nil)
	// Two creates and their echoes' reads (the tag's echo came during
	// clientPull, whose calls are not counted); the image's facts are read
	// once.
	wantCalls(t, "pull with echoes", e.calls(), map[string]int{"Images.Create": 2, "Images.Get": 2, "Content.ReaderAt": 2})
	if len(got.References) != 3 {
		t.Fatalf("pulled = %+v", got)
	}
	e.deliver(ctx)
	wantCalls(t, "events", e.calls(), map[string]int{})
	if _, err := e.is.Update(ctx, images.Image{Name: got.ID, Labels: map[string]string{PinnedLabelKey: PinnedLabelValue}}, "labels."+PinnedLabelKey); err != nil {
		t.Fatal(err)
	}
	e.calls()
	e.deliver(ctx)
	wantCalls(t, "foreign event", e.calls(), map[string]int{"Images.Get": 1})
	if st, _ := e.svc.Get(got.ID); !st.Pinned {
		t.Errorf("image not pinned after a foreign label change: %+v", st)
	}
}

func TestRemoveDeletesUnknownNames(t *testing.T) {
	e := newTestEnv(t, Options{})
	ctx := testCtx(t)
	a := makeManifest(t, e.cs, "a", 1, platforms.DefaultSpec())
	b := makeManifest(t, e.cs, "b", 1, platforms.DefaultSpec())
	id := e.pull(t, ctx, "example.test/a:1", a.target).ID
	e.pull(t, ctx, "example.test/b:1", b.target)
	e.deliver(ctx)
	// Created behind our back, event not seen yet.
	if _, err := e.is.Create(ctx, images.Image{Name: "example.test/other:1", Target: a.target}); err != nil {
		t.Fatal(err)
	}
	e.calls()
	if err := e.svc.Remove(ctx, id); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, "remove", e.calls(), map[string]int{"Images.List": 1, "Images.Delete": 4})
	e.deliver(ctx)
	recs, _ := e.is.List(ctx)
	if len(recs) != 3 {
		t.Errorf("records left: %v, want image b's 3", recs)
	}
	if len(e.svc.List()) != 1 {
		t.Errorf("cached: %+v, want image b", e.svc.List())
	}
	if err := e.svc.Remove(ctx, id); err != nil { // idempotent
		t.Fatal(err)
	}
}

// TestResync: the cache rebuilt from containerd's records equals the one
// built by pulls.
func TestResync(t *testing.T) {
	e := newTestEnv(t, Options{PinnedImages: []string{"example.test/pause:1"}})
	ctx := testCtx(t)
	a := makeIndex(t, e.cs, "a")
	p := makeManifest(t, e.cs, "p", 1, platforms.DefaultSpec())
	e.pull(t, ctx, "example.test/a:1", a.target)
	e.pull(t, ctx, "example.test/a:2", a.target)
	e.pull(t, ctx, "example.test/pause:1", p.target)
	e.deliver(ctx)
	before := e.svc.List()

	fresh := NewService(e.cli, Options{Namespace: "test", PinnedImages: []string{"example.test/pause:1"}}, prometheus.NewRegistry())
	if err := fresh.resync(ctx); err != nil {
		t.Fatal(err)
	}
	if after := fresh.List(); !reflect.DeepEqual(after, before) {
		t.Errorf("resynced cache\n%+v\nwant\n%+v", after, before)
	}
}

// The bookkeeping of pull (after client.Pull, whose own calls are not
// counted) and remove, with the watcher's handling of their events, against
// a fake containerd. calls/op counts containerd calls (a content read is one
// call, as the daemon's streaming Read). With rtt, every call takes that
// long. For comparison, the code before measured against a real containerd
// (grpc_server_handled_total minus client.Pull's own calls, an image with a
// single manifest): 50 calls for a first pull's bookkeeping, 20 for a
// re-pull's, 8 for a removal; now 4, 2 and 4.
func BenchmarkImageRecords(b *testing.B) {
	for _, rtt := range []time.Duration{0, 300 * time.Microsecond} {
		for _, bc := range []struct {
			name string
			run  func(b *testing.B, e *testEnv, ctx context.Context, img testImage)
		}{
			{"repull", func(b *testing.B, e *testEnv, ctx context.Context, img testImage) {
				e.pull(b, ctx, "example.test/a:1", img.target)
				e.deliver(ctx)
			}},
			{"pull+remove", func(b *testing.B, e *testEnv, ctx context.Context, img testImage) {
				e.pull(b, ctx, "example.test/a:1", img.target)
				e.deliver(ctx)
				if err := e.svc.Remove(ctx, "example.test/a:1"); err != nil {
					b.Fatal(err)
				}
				e.deliver(ctx)
			}},
			{"pull+remove,uncached", func(b *testing.B, e *testEnv, ctx context.Context, img testImage) {
				e.svc.infos = newInfoCache(infoCacheSize)
				e.pull(b, ctx, "example.test/a:1", img.target)
				e.deliver(ctx)
				if err := e.svc.Remove(ctx, "example.test/a:1"); err != nil {
					b.Fatal(err)
				}
				e.deliver(ctx)
			}},
		} {
			b.Run(fmt.Sprintf("%s/rtt=%s", bc.name, rtt), func(b *testing.B) {
				e := newTestEnv(b, Options{})
				ctx := testCtx(b)
				img := makeIndex(b, e.cs, "a")
				if bc.name == "repull" {
					e.pull(b, ctx, "example.test/a:1", img.target)
					e.deliver(ctx)
				}
				e.is.delay, e.cs.delay = rtt, rtt
				e.calls()
				b.ResetTimer()
				for b.Loop() {
					bc.run(b, e, ctx, img)
				}
				b.StopTimer()
				total := 0
				for _, n := range e.calls() {
					total += n
				}
				b.ReportMetric(float64(total)/float64(b.N), "calls/op")
			})
		}
	}
}
