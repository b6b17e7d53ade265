package image

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	eventtypes "github.com/containerd/containerd/api/events"
	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/pkg/filters"
	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/client_golang/prometheus"
)

// fakeImages is an in-memory images.Store with containerd's metadata
// semantics (Create fails on an existing name, Update with field paths,
// Delete fails on a missing one, List filters) that counts calls and records
// the event each successful write publishes.
type fakeImages struct {
	delay time.Duration // per call, to mimic a round trip
	// beforeWrite and afterWrite, when set, run at the start and the end
	// of each Create, Update and Delete call (outside the store's lock).
	beforeWrite, afterWrite func(name string)

	// quiet calls (client.Pull's, not the service's) are not counted.
	quiet atomic.Bool

	mu     sync.Mutex
	recs   map[string]images.Image
	events []*events.Envelope
	calls  map[string]int
}

func newFakeImages() *fakeImages {
	return &fakeImages{recs: map[string]images.Image{}, calls: map[string]int{}}
}

func (f *fakeImages) hooks() (before, after func(string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.beforeWrite, f.afterWrite
}

func (f *fakeImages) setHooks(before, after func(string)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.beforeWrite, f.afterWrite = before, after
}

// write runs fn (which holds the lock) between the hooks.
func (f *fakeImages) write(name string, fn func() error) error {
	before, after := f.hooks()
	if before != nil {
		before(name)
	}
	f.mu.Lock()
	err := fn()
	f.mu.Unlock()
	if after != nil {
		after(name)
	}
	return err
}

func (f *fakeImages) call(name string) {
	if f.quiet.Load() {
		return
	}
	if f.delay > 0 {
		time.Sleep(f.delay)
	}
	f.mu.Lock()
	f.calls[name]++
	f.mu.Unlock()
}

func (f *fakeImages) publishLocked(topic string, ev any) {
	a, err := typeurl.MarshalAny(ev)
	if err != nil {
		panic(err)
	}
	f.events = append(f.events, &events.Envelope{Topic: topic, Namespace: "test", Event: a})
}

// takeEvents returns and forgets the events published so far.
func (f *fakeImages) takeEvents() []*events.Envelope {
	f.mu.Lock()
	defer f.mu.Unlock()
	evs := f.events
	f.events = nil
	return evs
}

// takeCalls returns and resets the call counts.
func (f *fakeImages) takeCalls() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.calls
	f.calls = map[string]int{}
	return c
}

func cloneRec(r images.Image) images.Image {
	r.Labels = maps.Clone(r.Labels)
	return r
}

func (f *fakeImages) Get(ctx context.Context, name string) (images.Image, error) {
	f.call("Images.Get")
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.recs[name]
	if !ok {
		return images.Image{}, fmt.Errorf("image %q: %w", name, errdefs.ErrNotFound)
	}
	return cloneRec(r), nil
}

func (f *fakeImages) List(ctx context.Context, fs ...string) ([]images.Image, error) {
	f.call("Images.List")
	filter, err := filters.ParseAll(fs...)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, errdefs.ErrInvalidArgument)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []images.Image
	for _, r := range f.recs {
		if filter.Match(adaptImage(r)) {
			out = append(out, cloneRec(r))
		}
	}
	return out, nil
}

func adaptImage(r images.Image) filters.Adaptor {
	return filters.AdapterFunc(func(fp []string) (string, bool) {
		if len(fp) == 0 {
			return "", false
		}
		switch fp[0] {
		case "name":
			return r.Name, len(r.Name) > 0
		case "target":
			if len(fp) < 2 {
				return "", false
			}
			switch fp[1] {
			case "digest":
				return r.Target.Digest.String(), true
			case "mediatype":
				return r.Target.MediaType, true
			}
		case "labels":
			v, ok := r.Labels[strings.Join(fp[1:], ".")]
			return v, ok
		}
		return "", false
	})
}

func (f *fakeImages) Create(ctx context.Context, r images.Image) (images.Image, error) {
	f.call("Images.Create")
	var created images.Image
	err := f.write(r.Name, func() error {
		if _, ok := f.recs[r.Name]; ok {
			return fmt.Errorf("image %q: %w", r.Name, errdefs.ErrAlreadyExists)
		}
		r = cloneRec(r)
		r.CreatedAt = time.Now()
		r.UpdatedAt = r.CreatedAt
		f.recs[r.Name] = r
		f.publishLocked("/images/create", &eventtypes.ImageCreate{Name: r.Name, Labels: r.Labels})
		created = cloneRec(r)
		return nil
	})
	return created, err
}

func (f *fakeImages) Update(ctx context.Context, r images.Image, fieldpaths ...string) (images.Image, error) {
	f.call("Images.Update")
	var updated images.Image
	err := f.write(r.Name, func() error {
		old, ok := f.recs[r.Name]
		if !ok {
			return fmt.Errorf("image %q: %w", r.Name, errdefs.ErrNotFound)
		}
		updated = cloneRec(old)
		if len(fieldpaths) == 0 {
			updated = cloneRec(r)
			updated.CreatedAt = old.CreatedAt
		}
		for _, p := range fieldpaths {
			switch {
			case strings.HasPrefix(p, "labels."):
				if updated.Labels == nil {
					updated.Labels = map[string]string{}
				}
				k := strings.TrimPrefix(p, "labels.")
				updated.Labels[k] = r.Labels[k]
			case p == "target":
				updated.Target = r.Target
			case p == "labels":
				updated.Labels = maps.Clone(r.Labels)
			default:
				return fmt.Errorf("cannot update %q: %w", p, errdefs.ErrInvalidArgument)
			}
		}
		updated.UpdatedAt = time.Now()
		f.recs[r.Name] = updated
		f.publishLocked("/images/update", &eventtypes.ImageUpdate{Name: r.Name, Labels: updated.Labels})
		updated = cloneRec(updated)
		return nil
	})
	if err != nil {
		return images.Image{}, err
	}
	return updated, nil
}

func (f *fakeImages) Delete(ctx context.Context, name string, opts ...images.DeleteOpt) error {
	f.call("Images.Delete")
	return f.write(name, func() error {
		if _, ok := f.recs[name]; !ok {
			return fmt.Errorf("image %q: %w", name, errdefs.ErrNotFound)
		}
		delete(f.recs, name)
		f.publishLocked("/images/delete", &eventtypes.ImageDelete{Name: name})
		return nil
	})
}

// countingContent counts the content reads of the image bookkeeping.
type countingContent struct {
	content.Store
	delay        time.Duration
	info, reader atomic.Int64
}

func (c *countingContent) Info(ctx context.Context, dgst digest.Digest) (content.Info, error) {
	if c.delay > 0 {
		time.Sleep(c.delay)
	}
	c.info.Add(1)
	return c.Store.Info(ctx, dgst)
}

// ReaderAt costs two calls over containerd's content proxy (Info + Read);
// the service's own blob reader needs one (a fake has no gRPC connection,
// so the reads are counted here).
func (c *countingContent) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	if c.delay > 0 {
		time.Sleep(c.delay)
	}
	c.reader.Add(1)
	return c.Store.ReaderAt(ctx, desc)
}

type testEnv struct {
	svc *Service
	is  *fakeImages
	cs  *countingContent
	cli *containerd.Client
}

// newTestEnv builds a Service on a client without connection whose image
// store is a fakeImages and whose content store is a local one in a temp dir.
func newTestEnv(tb testing.TB, opts Options) *testEnv {
	tb.Helper()
	ls, err := local.NewStore(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	is := newFakeImages()
	cs := &countingContent{Store: ls}
	cli, err := containerd.New("", containerd.WithServices(containerd.WithContentStore(cs), containerd.WithImageStore(is)))
	if err != nil {
		tb.Fatal(err)
	}
	if opts.Namespace == "" {
		opts.Namespace = "test"
	}
	svc := NewService(cli, opts, prometheus.NewRegistry())
	// No containerd behind the client: a lease is only the call of fn.
	svc.lease = func(ctx context.Context, _, _ string, fn func(context.Context) error) error { return fn(ctx) }
	return &testEnv{svc: svc, is: is, cs: cs, cli: cli}
}

// calls returns and resets every call count (content reads as
// "Content.ReaderAt" / "Content.Info").
func (e *testEnv) calls() map[string]int {
	c := e.is.takeCalls()
	if n := e.cs.reader.Swap(0); n > 0 {
		c["Content.ReaderAt"] = int(n)
	}
	if n := e.cs.info.Swap(0); n > 0 {
		c["Content.Info"] = int(n)
	}
	return c
}

// deliver hands the events published so far to the watcher's handler and
// waits for the refreshes of events deferred to finished operations.
func (e *testEnv) deliver(ctx context.Context) int {
	evs := e.is.takeEvents()
	for _, ev := range evs {
		e.svc.handleEvent(ctx, ev)
	}
	return len(evs)
}

type testImage struct {
	target   ocispec.Descriptor // manifest or index
	manifest ocispec.Descriptor
	config   ocispec.Descriptor
	size     int64 // what client.Image.Size reports
	diffIDs  []digest.Digest
	user     string
}

func writeBlob(tb testing.TB, cs content.Ingester, mediaType string, v any) ocispec.Descriptor {
	tb.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		tb.Fatal(err)
	}
	desc := ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(b), Size: int64(len(b))}
	if err := content.WriteBlob(context.Background(), cs, desc.Digest.String(), bytes.NewReader(b), desc); err != nil {
		tb.Fatal(err)
	}
	return desc
}

// makeManifest writes a config and a manifest with layers (layer blobs are
// not written: the bookkeeping never reads them).
func makeManifest(tb testing.TB, cs content.Ingester, seed string, layers int, platform ocispec.Platform) testImage {
	tb.Helper()
	img := testImage{user: "u-" + seed}
	var layerDescs []ocispec.Descriptor
	for i := range layers {
		d := digest.FromString(fmt.Sprintf("%s-layer-%d", seed, i))
		img.diffIDs = append(img.diffIDs, digest.FromString(fmt.Sprintf("%s-diff-%d", seed, i)))
		layerDescs = append(layerDescs, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: d, Size: int64(1000 * (i + 1))})
	}
	cfg := ocispec.Image{
		Platform: platform,
		Config:   ocispec.ImageConfig{User: img.user, Env: []string{"SEED=" + seed}},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: img.diffIDs},
	}
	img.config = writeBlob(tb, cs, ocispec.MediaTypeImageConfig, cfg)
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: img.config, Layers: layerDescs}
	img.manifest = writeBlob(tb, cs, ocispec.MediaTypeImageManifest, m)
	img.target = img.manifest
	img.size = img.manifest.Size + img.config.Size
	for _, l := range layerDescs {
		img.size += l.Size
	}
	return img
}

// makeIndex writes an index over a manifest for the default platform and
// one for another platform; the image is the default platform's.
func makeIndex(tb testing.TB, cs content.Ingester, seed string) testImage {
	tb.Helper()
	def := platforms.DefaultSpec()
	other := ocispec.Platform{OS: "linux", Architecture: "s390x"}
	if def.Architecture == "s390x" {
		other.Architecture = "riscv64"
	}
	mine := makeManifest(tb, cs, seed, 2, def)
	theirs := makeManifest(tb, cs, seed+"-other", 3, other)
	md, od := mine.manifest, theirs.manifest
	md.Platform, od.Platform = &def, &other
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{od, md}}
	mine.target = writeBlob(tb, cs, ocispec.MediaTypeImageIndex, idx)
	mine.size += mine.target.Size
	return mine
}

// clientPull does what client.Pull does to the image record of ref once the
// content is there: create it, or replace it when it exists. Its calls are
// not counted.
func (e *testEnv) clientPull(ctx context.Context, ref string, target ocispec.Descriptor, labels map[string]string) images.Image {
	e.is.quiet.Store(true)
	defer e.is.quiet.Store(false)
	rec := images.Image{Name: ref, Target: target, Labels: labels}
	created, err := e.is.Create(ctx, rec)
	if err == nil {
		return created
	}
	updated, err := e.is.Update(ctx, rec)
	if err != nil {
		panic(err)
	}
	return updated
}

// pull runs what Service.pull does after the transfer (client.Pull is
// replaced by clientPull).
func (e *testEnv) pull(tb testing.TB, ctx context.Context, ref string, target ocispec.Descriptor) Image {
	tb.Helper()
	named, err := NormalizeRef(ref)
	if err != nil {
		tb.Fatal(err)
	}
	labels := map[string]string{ImageLabelKey: ImageLabelValue}
	if e.svc.store.isPinnedName(named.String()) {
		labels[PinnedLabelKey] = PinnedLabelValue
	}
	since := e.svc.store.version()
	pulled := e.clientPull(ctx, named.String(), target, labels)
	img, err := e.svc.nameImage(ctx, named, pulled, labels, since)
	if err != nil {
		tb.Fatal(err)
	}
	return img.Image
}
