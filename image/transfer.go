package image

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/images"
	streamproxy "github.com/containerd/containerd/v2/core/streaming/proxy"
	"github.com/containerd/containerd/v2/core/transfer"
	transferimage "github.com/containerd/containerd/v2/core/transfer/image"
	"github.com/containerd/containerd/v2/core/transfer/proxy"
	"github.com/containerd/containerd/v2/core/transfer/registry"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"k8s.io/klog/v2"
)

// Where a pull's time goes (a PullImage of a one-layer image that is not in
// the namespace, measured with test/e2e TestImagePullCycleTimes and the
// daemon's tracing spans, on a private containerd 2.4):
//
// Client-side (client.Pull, 25 containerd calls per PullImage): a lease
// create and delete, Introspection/Plugins (the unpacker's snapshotter
// check), per blob a Content/Write stream (the layer's bytes flow registry ->
// daemon -> containerd), Content/Info + Read for manifests, one Content/Update
// per GC label, the unpack (Snapshots/Prepare, the layer's fetch, which the
// unpacker starts only after the manifest walk, Diff/Apply, Snapshots/Commit,
// two more label updates), Images/Create of the tag and our two naming
// creates. Every write is a bolt transaction in containerd, every call a
// round trip; Diff/Apply and the layer fetch dominate, the rest is about
// twenty serial round trips.
//
// Through the Transfer service (containerd >= 1.7): one Streaming/Stream
// (progress, plus one for credentials when the request has some), one
// Transfer call doing the same work in-process in containerd (its own lease,
// the layer fetched by containerd itself), and our two naming creates.

// fetchRequest is what one pull asks of containerd: fetch ref, unpack it
// into snapshotter and write the record ref with labels.
type fetchRequest struct {
	ref         string
	creds       *Credentials
	labels      map[string]string
	snapshotter string
	tracker     *progressTracker
}

// fetchFunc is one way of doing a fetchRequest; it returns the record ref
// as written.
type fetchFunc func(context.Context, fetchRequest) (images.Image, error)

// fetch pulls through containerd's Transfer service when it can (see
// canTransfer), client-side otherwise. A containerd without the service
// (1.6) is remembered and not asked again. A transfer that fails for any
// other reason than the pull's context is retried client-side: errors come
// back from the Transfer service as flattened gRPC statuses, while the
// client-side pull keeps the registry's status codes and network errors,
// which classifyPullError needs (a 401 must reach kubelet as Unauthenticated,
// an unreachable registry as Unavailable). Only failing pulls pay for that.
// via names the way that succeeded ("transfer" or "client").
func (s *Service) fetch(ctx context.Context, r fetchRequest) (rec images.Image, via string, err error) {
	if s.viaTransfer != nil && s.canTransfer(r) {
		rec, err := s.viaTransfer(ctx, r)
		switch {
		case err == nil:
			return rec, "transfer", nil
		case ctx.Err() != nil:
			return images.Image{}, "transfer", err
		case errdefs.IsNotImplemented(err):
			if !s.noTransfer.Swap(true) {
				klog.InfoS("containerd has no usable transfer service; pulling client-side", "err", err)
			}
		default:
			klog.V(2).InfoS("Pull through containerd's transfer service failed; retrying client-side", "ref", r.ref, "err", err)
		}
	}
	rec, err = s.viaClient(ctx, r)
	return rec, "client", err
}

// canTransfer reports whether the Transfer service can do r as the
// client-side pull would: containerd resolves hosts.toml from one root
// directory and takes username/secret credentials only (no registry bearer
// token); a runtime handler's snapshotter, which containerd may not unpack
// into (it then skips the unpack silently), stays client-side.
func (s *Service) canTransfer(r fetchRequest) bool {
	if s.noTransfer.Load() {
		return false
	}
	if r.creds != nil && r.creds.RegistryToken != "" {
		return false
	}
	if r.snapshotter != s.opts.Snapshotter {
		return false
	}
	_, ok := s.transferHostDir()
	return ok
}

// transferHostDir is the hosts.toml root the Transfer service reads ("" for
// none); false when there are several roots, which it cannot search.
func (s *Service) transferHostDir() (string, bool) {
	var roots []string
	for _, r := range filepath.SplitList(s.opts.RegistryConfigPath) {
		if r != "" {
			roots = append(roots, r)
		}
	}
	switch len(roots) {
	case 0:
		return "", true
	case 1:
		return roots[0], true
	}
	return "", false
}

// transfer has containerd pull, unpack and record r.ref itself. ctx carries
// the pull's temporary lease: without one the transfer service takes its own
// 24 h lease, which a containerd killed during the transfer never releases
// (the chaos campaign found one, pinning the pulled layers' snapshots).
func (s *Service) transfer(ctx context.Context, r fetchRequest) (images.Image, error) {
	hostDir, _ := s.transferHostDir()
	var ropts []registry.Opt
	if hostDir != "" {
		ropts = append(ropts, registry.WithHostDir(hostDir))
	}
	if r.creds != nil {
		ropts = append(ropts, registry.WithCredentials(transferCreds{r.creds}))
	}
	src, err := registry.NewOCIRegistry(ctx, r.ref, ropts...)
	if err != nil {
		return images.Image{}, fmt.Errorf("configuring registry of %q: %w", r.ref, err)
	}
	platform := platforms.DefaultSpec()
	dst := transferimage.NewStore(r.ref,
		transferimage.WithPlatforms(platform),
		transferimage.WithUnpack(platform, r.snapshotter),
		transferimage.WithImageLabels(r.labels),
	)
	prog := newTransferProgress(r.ref, r.tracker)
	if r.tracker != nil {
		// The transfer is one request in flight for the watchdog; its
		// progress events are its bytes.
		r.tracker.active.Add(1)
		defer r.tracker.active.Add(-1)
	}
	conn := s.client.Conn()
	err = proxy.NewTransferrer(conn, streamproxy.NewStreamCreator(conn)).Transfer(ctx, src, dst, transfer.WithProgress(prog.update))
	if err != nil {
		return images.Image{}, err
	}
	// The "saved" event names the record's target; it was sent before the
	// transfer returned, but its stream is read by another goroutine.
	select {
	case <-prog.completed:
	case <-time.After(time.Second):
	case <-ctx.Done():
	}
	if rec, ok := prog.saved(); ok {
		rec.Labels = maps.Clone(r.labels)
		return rec, nil
	}
	// containerd < 2.0 sends no descriptor: read the record.
	return s.images.Get(ctx, r.ref)
}

// transferCreds answers containerd's credential requests of one pull.
type transferCreds struct{ c *Credentials }

func (t transferCreds) GetCredentials(_ context.Context, _, host string) (registry.Credentials, error) {
	user, secret, err := t.c.ForHost(host)
	if err != nil {
		return registry.Credentials{}, err
	}
	return registry.Credentials{Host: host, Username: user, Secret: secret}, nil
}

// transferProgress follows a transfer's progress events: byte counts for
// the watchdog and the pull metrics, and the record the transfer saved.
type transferProgress struct {
	ref       string
	tracker   *progressTracker
	completed chan struct{}

	mu    sync.Mutex
	last  map[string]int64 // by kind and object
	rec   images.Image
	found bool
	done  bool
}

func newTransferProgress(ref string, tracker *progressTracker) *transferProgress {
	return &transferProgress{ref: ref, tracker: tracker, completed: make(chan struct{}), last: map[string]int64{}}
}

func (p *transferProgress) update(e transfer.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case e.Event == "saved" && e.Name == p.ref && e.Desc != nil:
		p.rec, p.found = images.Image{Name: e.Name, Target: *e.Desc}, true
	case strings.HasPrefix(e.Event, "Completed"):
		if !p.done {
			p.done = true
			close(p.completed)
		}
	}
	if e.Name == "" || e.Progress <= 0 || p.tracker == nil {
		return
	}
	kind := "download"
	if strings.HasPrefix(e.Event, "extract") {
		kind = "extract"
	}
	key := kind + "\x00" + e.Name
	delta := e.Progress - p.last[key]
	if delta <= 0 {
		return
	}
	p.last[key] = e.Progress
	if kind == "download" {
		p.tracker.bytes.Add(uint64(delta))
	} else {
		p.tracker.other.Add(uint64(delta))
	}
}

func (p *transferProgress) saved() (images.Image, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.rec, p.found
}
