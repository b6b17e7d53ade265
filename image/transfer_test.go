package image

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/containerd/containerd/v2/core/images"
	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/containerd/containerd/v2/core/transfer"
	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// fakeFetchers replaces both pull paths: each writes the record as the real
// one would (when ok) or fails with its error.
type fakeFetchers struct {
	e                      *testEnv
	target                 ocispec.Descriptor
	transferErr, clientErr error
	transfers, clients     atomic.Int32
}

func (f *fakeFetchers) install() {
	f.e.svc.viaTransfer = func(ctx context.Context, r fetchRequest) (images.Image, error) {
		f.transfers.Add(1)
		if f.transferErr != nil {
			return images.Image{}, f.transferErr
		}
		return f.e.clientPull(ctx, r.ref, f.target, r.labels), nil
	}
	f.e.svc.viaClient = func(ctx context.Context, r fetchRequest) (images.Image, error) {
		f.clients.Add(1)
		if f.clientErr != nil {
			return images.Image{}, f.clientErr
		}
		return f.e.clientPull(ctx, r.ref, f.target, r.labels), nil
	}
}

func (f *fakeFetchers) counts() (int32, int32) { return f.transfers.Swap(0), f.clients.Swap(0) }

func TestPullPathChoice(t *testing.T) {
	unauthorized := remoteerrors.ErrUnexpectedStatus{Status: "401 Unauthorized", StatusCode: 401}
	for _, tc := range []struct {
		name                   string
		opts                   Options
		creds                  *Credentials
		pullOpts               []PullOpt
		transferErr, clientErr error
		wantTransfers          int32
		wantClients            int32
		wantErr                func(error) bool
	}{
		{name: "transfer", wantTransfers: 1},
		{name: "transfer with credentials", creds: &Credentials{Username: "u", Password: "p"}, wantTransfers: 1},
		{name: "transfer with one hosts.toml root", opts: Options{RegistryConfigPath: "/etc/certs.d"}, wantTransfers: 1},
		// containerd without the service (1.6): client-side, and the
		// service is not asked again (second pull below).
		{name: "no transfer service", transferErr: fmt.Errorf("unknown service: %w", errdefs.ErrNotImplemented), wantTransfers: 1, wantClients: 1},
		// Errors come back flattened from the service: the client-side
		// retry gives the registry's status for the CRI code.
		{
			name: "transfer failure retried client-side", transferErr: errors.New("failed to resolve image: 401 Unauthorized"),
			clientErr: unauthorized, wantTransfers: 1, wantClients: 1, wantErr: errdefs.IsUnauthorized,
		},
		{name: "registry token", creds: &Credentials{RegistryToken: "tok"}, wantClients: 1},
		{name: "several hosts.toml roots", opts: Options{RegistryConfigPath: "/a:/b"}, wantClients: 1},
		{name: "runtime handler snapshotter", pullOpts: []PullOpt{WithSnapshotter("native")}, wantClients: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t, tc.opts)
			ctx := testCtx(t)
			img := makeManifest(t, e.cs, "transfer", 1, platforms.DefaultSpec())
			f := &fakeFetchers{e: e, target: img.target, transferErr: tc.transferErr, clientErr: tc.clientErr}
			f.install()
			for round := range 2 {
				got, err := e.svc.Pull(ctx, "example.com/app:v1", tc.creds, tc.pullOpts...)
				transfers, clients := f.counts()
				if round == 1 && errdefs.IsNotImplemented(tc.transferErr) {
					// Remembered: no second attempt.
					if transfers != 0 || clients != 1 {
						t.Errorf("second pull: %d transfers, %d client pulls; want 0, 1", transfers, clients)
					}
					continue
				}
				if transfers != tc.wantTransfers || clients != tc.wantClients {
					t.Errorf("pull %d: %d transfers, %d client pulls; want %d, %d", round, transfers, clients, tc.wantTransfers, tc.wantClients)
				}
				if tc.wantErr != nil {
					if err == nil || !tc.wantErr(err) {
						t.Fatalf("pull: %v, want the client-side error's class", err)
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				if got.ID != img.config.Digest.String() {
					t.Errorf("ID %s, want %s", got.ID, img.config.Digest)
				}
			}
		})
	}
}

// TestPullTransferCancelledNotRetried: a transfer ended by the pull's
// context (caller gone, watchdog) is not retried client-side.
func TestPullTransferCancelledNotRetried(t *testing.T) {
	e := newTestEnv(t, Options{})
	f := &fakeFetchers{e: e}
	f.install()
	ctx, cancel := context.WithCancel(testCtx(t))
	e.svc.viaTransfer = func(ctx context.Context, r fetchRequest) (images.Image, error) {
		f.transfers.Add(1)
		cancel()
		return images.Image{}, ctx.Err()
	}
	_, _, err := e.svc.fetch(ctx, fetchRequest{ref: "example.com/app:v1", snapshotter: e.svc.opts.Snapshotter})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("fetch: %v, want context.Canceled", err)
	}
	if transfers, clients := f.counts(); transfers != 1 || clients != 0 {
		t.Errorf("%d transfers, %d client pulls; want 1, 0", transfers, clients)
	}
}

func TestTransferProgress(t *testing.T) {
	tr := &progressTracker{}
	p := newTransferProgress("example.com/app:v1", tr)
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.Digest("sha256:" + strings.Repeat("a", 64)), Size: 10}
	for _, e := range []transfer.Progress{
		{Event: "Resolving from OCI Registry (example.com/app:v1)"},
		{Event: "downloading", Name: "layer-1", Progress: 100, Total: 300},
		{Event: "downloading", Name: "layer-1", Progress: 250, Total: 300},
		{Event: "downloading", Name: "layer-2", Progress: 50, Total: 50},
		{Event: "complete", Name: "layer-1", Progress: 300, Total: 300},
		{Event: "extracting", Name: "layer-1", Progress: 1000},
		{Event: "extracted", Name: "layer-1", Progress: 1200},
		{Event: "saved", Name: "example.com/other:v1", Desc: &ocispec.Descriptor{Digest: digest.Digest("sha256:" + strings.Repeat("b", 64))}},
		{Event: "saved", Name: "example.com/app:v1", Desc: &desc},
	} {
		p.update(e)
	}
	select {
	case <-p.completed:
		t.Fatal("completed before the Completed event")
	default:
	}
	p.update(transfer.Progress{Event: "Completed pull from OCI Registry (example.com/app:v1)"})
	p.update(transfer.Progress{Event: "Completed pull from OCI Registry (example.com/app:v1)"}) // no double close
	<-p.completed
	if _, n := tr.status(); n != 350 {
		t.Errorf("bytes %d, want 350", n)
	}
	if n := tr.other.Load(); n != 1200 {
		t.Errorf("extraction progress %d, want 1200", n)
	}
	rec, ok := p.saved()
	if !ok || rec.Name != "example.com/app:v1" || rec.Target.Digest != desc.Digest {
		t.Errorf("saved = %+v, %v", rec, ok)
	}
}

// TestRegressionPullContentUnpinnedBeforeNamed: the pull's temporary lease
// was released as soon as the fetch had written the tag record, before the
// ID and digest records existed. A RemoveImage of the tag in that window
// (critest's image benchmark pulls and removes one image from two clients)
// let its synchronous garbage collection delete the content, and the pull
// then named an image whose content was gone. The lease now covers the
// naming: every name is written before it is released.
func TestRegressionPullContentUnpinnedBeforeNamed(t *testing.T) {
	for _, path := range []string{"transfer", "client"} {
		t.Run(path, func(t *testing.T) {
			e := newTestEnv(t, Options{})
			ctx := testCtx(t)
			img := makeManifest(t, e.cs, "pinned", 1, platforms.DefaultSpec())
			f := &fakeFetchers{e: e, target: img.target}
			if path == "client" {
				f.transferErr = fmt.Errorf("no transfer service: %w", errdefs.ErrNotImplemented)
			}
			f.install()
			var (
				mu     sync.Mutex
				held   bool
				leases int
				late   []string // writes while no lease was held
			)
			e.svc.lease = func(ctx context.Context, _, _ string, fn func(context.Context) error) error {
				mu.Lock()
				held = true
				leases++
				mu.Unlock()
				defer func() {
					mu.Lock()
					held = false
					mu.Unlock()
				}()
				return fn(ctx)
			}
			e.is.setHooks(func(name string) {
				mu.Lock()
				defer mu.Unlock()
				if !held {
					late = append(late, name)
				}
			}, nil)
			got, err := e.svc.Pull(ctx, "example.com/app:v1", nil)
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(late) > 0 {
				t.Errorf("records %q written after the pull's lease was released", late)
			}
			if leases != 1 {
				t.Errorf("%d leases taken, want 1", leases)
			}
			if want := []string{"example.com/app:v1"}; !slices.Equal(got.RepoTags, want) || len(got.RepoDigests) != 1 || got.ID != img.config.Digest.String() {
				t.Errorf("pulled %+v", got)
			}
		})
	}
}
