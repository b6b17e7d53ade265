package image

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	dockerconfig "github.com/containerd/containerd/v2/core/remotes/docker/config"
	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"k8s.io/klog/v2"
)

// PullOpt tunes one pull.
type PullOpt func(*pullOptions)

type pullOptions struct {
	snapshotter string
}

// WithSnapshotter unpacks into snapshotter instead of the default one ("" = default).
func WithSnapshotter(name string) PullOpt {
	return func(o *pullOptions) {
		if name != "" {
			o.snapshotter = name
		}
	}
}

func (s *Service) pullOptions(opts []PullOpt) pullOptions {
	o := pullOptions{snapshotter: s.opts.Snapshotter}
	for _, f := range opts {
		f(&o)
	}
	return o
}

// Pull pulls ref (normalized docker-style) with the per-request credentials,
// unpacks it into the snapshotter and names it in containerd by repo tag,
// repo digest and ID. Concurrent pulls of the same reference with the same
// credentials share one pull, which is cancelled only when every caller
// has gone away. Errors wrap errdefs sentinels: InvalidArgument (bad
// reference or AuthConfig), Unauthenticated / PermissionDenied (registry
// refused the credentials), NotFound (no such image), Unavailable (registry
// unreachable), and context.DeadlineExceeded when the pull made no progress
// for Options.PullProgressTimeout.
func (s *Service) Pull(ctx context.Context, ref string, creds *Credentials, opts ...PullOpt) (Image, error) {
	named, err := NormalizeRef(ref)
	if err != nil {
		return Image{}, err
	}
	if err := creds.validate(); err != nil {
		return Image{}, err
	}
	o := s.pullOptions(opts)
	key := named.String() + "\x00" + o.snapshotter + "\x00" + creds.fingerprint()
	img, err := s.flight.do(ctx, key, func(fctx context.Context) (Image, error) {
		return s.pull(fctx, named, creds, o)
	})
	if err != nil {
		return Image{}, err
	}
	return img.clone(), nil
}

// fingerprint identifies the credentials without keeping them.
func (c *Credentials) fingerprint() string {
	if c == nil {
		return ""
	}
	h := sha256.New()
	for _, f := range []string{c.Username, c.Password, c.Auth, c.ServerAddress, c.IdentityToken, c.RegistryToken} {
		h.Write([]byte(f))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (s *Service) pull(ctx context.Context, named reference.Named, creds *Credentials, o pullOptions) (_ Image, retErr error) {
	ref := named.String()
	start := time.Now()
	tracker := &progressTracker{}
	s.metrics.inProgress.Inc()
	defer func() {
		s.metrics.inProgress.Dec()
		result := "success"
		if retErr != nil {
			result = "failure"
		}
		s.metrics.pulls.WithLabelValues(result).Inc()
		s.metrics.duration.WithLabelValues(result).Observe(time.Since(start).Seconds())
		_, n := tracker.status()
		s.metrics.bytes.Add(float64(n))
	}()

	labels := map[string]string{ImageLabelKey: ImageLabelValue}
	if s.store.isPinnedName(ref) {
		labels[PinnedLabelKey] = PinnedLabelValue
	}
	klog.V(2).InfoS("Pulling image", "ref", ref, "snapshotter", o.snapshotter)
	var (
		img    namedImage
		via    string
		leased bool // the lease was taken
	)
	// One temporary lease covers the fetch and the naming: the content must
	// stay pinned until every name of the image exists. The record the fetch
	// writes alone does not protect it: a concurrent RemoveImage may delete
	// it, and its synchronous garbage collection would then take the content
	// from under the names written next.
	err := s.lease(ctx, "pull", ref, func(lctx context.Context) error {
		leased = true
		pctx, cancel := context.WithCancelCause(lctx)
		defer cancel(nil)
		timeout := s.opts.PullProgressTimeout
		stallErr := fmt.Errorf("pulling image %q: cancelled after no progress for %s (image pull progress timeout): %w",
			ref, timeout, context.DeadlineExceeded)
		go watchProgress(pctx, ref, tracker, timeout, s.opts.progressCheckInterval, func() { cancel(stallErr) })

		// The pull ends by creating or updating the record ref.
		since := s.store.version()
		rec, v, err := s.fetch(pctx, fetchRequest{ref: ref, creds: creds, labels: labels, snapshotter: o.snapshotter, tracker: tracker})
		via = v
		if err != nil {
			if cause := context.Cause(pctx); errors.Is(cause, stallErr) {
				return stallErr
			}
			return classifyPullError(ref, err)
		}
		cancel(nil) // stop the watchdog
		img, err = s.nameImage(ctx, named, rec, labels, since)
		return err
	})
	if err != nil {
		if !leased {
			return Image{}, classifyPullError(ref, err)
		}
		return Image{}, err
	}
	_, n := tracker.status()
	klog.InfoS("Pulled image", "ref", ref, "id", img.ID, "repoTag", img.pulledTag, "repoDigest", img.pulledDigest,
		"size", img.Size, "bytesFetched", n, "via", via, "duration", time.Since(start))
	return img.Image, nil
}

// pullViaClient pulls r.ref client-side (client.Pull): the daemon fetches
// the content through the registry hosts of registryHosts into containerd
// and has containerd unpack it. ctx carries the pull's temporary lease
// (client.Pull then takes none of its own; it would release that one with
// the cancelled context, which leaves the partial content pinned for the
// lease's 24h expiry).
func (s *Service) pullViaClient(ctx context.Context, r fetchRequest) (images.Image, error) {
	resolver := docker.NewResolver(docker.ResolverOptions{Hosts: s.registryHosts(ctx, r.creds, r.tracker)})
	cimg, err := s.client.Pull(ctx, r.ref,
		containerd.WithResolver(resolver),
		containerd.WithPullUnpack,
		containerd.WithPullSnapshotter(r.snapshotter),
		containerd.WithPullLabels(r.labels),
		containerd.WithMaxConcurrentDownloads(s.opts.MaxConcurrentDownloads),
		containerd.WithDownloadLimiter(s.downloads),
	)
	if err != nil {
		return images.Image{}, err
	}
	return cimg.Metadata(), nil
}

type namedImage struct {
	Image
	pulledTag, pulledDigest string
}

// nameImage gives the image pulled by named (whose record pulled
// client.Pull has just written) its names in containerd, ID, repo tag and
// repo digest, all pointing at the pulled target with labels, and puts them
// into the cache. The image's facts are worked out once for all names. The
// cache takes each name as written unless the name changed in the cache
// after its write began (since: the store version before client.Pull, for
// the name client.Pull wrote), i.e. concurrently: then it is read again.
func (s *Service) nameImage(ctx context.Context, named reference.Named, pulled images.Image, labels map[string]string, since uint64) (namedImage, error) {
	ref := named.String()
	info, err := s.imageInfo(ctx, pulled.Name, pulled.Target, true)
	if err != nil {
		return namedImage{}, fmt.Errorf("reading config descriptor of pulled image %q: %w", ref, err)
	}
	id := info.ID
	repoDigest, repoTag := repoDigestAndTag(named, pulled.Target.Digest)
	names := []string{id}
	for _, n := range []string{repoTag, repoDigest, pulled.Name} {
		if n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	recs := make([]images.Image, len(names))
	errs := make([]error, len(names))
	sinces := make([]uint64, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		if name == pulled.Name && hasLabels(pulled, labels) {
			recs[i], sinces[i] = pulled, since // as client.Pull wrote it
			continue
		}
		wg.Go(func() {
			sinces[i] = s.store.version()
			recs[i], errs[i] = s.createOrUpdateRecord(ctx, name, pulled.Target, labels)
		})
	}
	wg.Wait()
	// The cache takes every record written, also when naming failed for
	// another name.
	var firstErr error
	for i, name := range names {
		if errs[i] != nil {
			if firstErr == nil {
				firstErr = fmt.Errorf("naming image %s %q in containerd: %w", id, name, errs[i])
			}
			continue
		}
		rec := recs[i]
		if s.store.apply(name, &info, rec.Labels[PinnedLabelKey] == PinnedLabelValue, rec.Target.Digest.String(), sinces[i]) {
			continue
		}
		if err := s.refreshName(ctx, name); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("caching image %q: %w", name, err)
		}
	}
	if firstErr != nil {
		s.invalidateFsInfo()
		return namedImage{}, firstErr
	}
	s.invalidateFsInfo()
	img, ok := s.store.byID(id)
	if !ok {
		return namedImage{}, fmt.Errorf("image %s (%q) was removed while being pulled: %w", id, ref, errdefs.ErrNotFound)
	}
	return namedImage{Image: img, pulledTag: repoTag, pulledDigest: repoDigest}, nil
}

// registryHosts builds the per-pull registry configuration: the hosts.toml
// tree under RegistryConfigPath (mirrors, plain HTTP, TLS), the request's
// credentials and the progress-counting transport. Loopback registries
// without a hosts.toml are reached over HTTPS with fallback to plain HTTP
// (containerd's docker.IsLocalhost rule in ConfigureHosts).
func (s *Service) registryHosts(ctx context.Context, creds *Credentials, tracker *progressTracker) docker.RegistryHosts {
	opts := dockerconfig.HostOptions{
		Credentials:  creds.ForHost,
		UpdateClient: updateClient(tracker, creds.registryToken),
	}
	if s.opts.RegistryConfigPath != "" {
		opts.HostDir = hostDirFromRoots(filepath.SplitList(s.opts.RegistryConfigPath))
	}
	return dockerconfig.ConfigureHosts(ctx, opts)
}

// hostDirFromRoots searches several hosts.toml roots in order.
func hostDirFromRoots(roots []string) func(string) (string, error) {
	fns := make([]func(string) (string, error), 0, len(roots))
	for _, r := range roots {
		if r != "" {
			fns = append(fns, dockerconfig.HostDirFromRoot(r))
		}
	}
	return func(host string) (string, error) {
		for _, fn := range fns {
			dir, err := fn(host)
			if err != nil && !errdefs.IsNotFound(err) {
				return "", err
			}
			if dir != "" {
				return dir, nil
			}
		}
		return "", nil
	}
}

// classifyPullError gives a pull failure the errdefs class the CRI caller
// needs (server/errors.go maps it to a gRPC code), keeping the message.
func classifyPullError(ref string, err error) error {
	msg := fmt.Sprintf("failed to pull and unpack image %q", ref)
	var status remoteerrors.ErrUnexpectedStatus
	var netErr net.Error
	var opErr *net.OpError
	var dnsErr *net.DNSError
	var urlErr *url.Error
	var tlsErr *tls.CertificateVerificationError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return fmt.Errorf("%s: %w", msg, err)
	case errors.Is(err, docker.ErrInvalidAuthorization):
		return fmt.Errorf("%s: %v: %w", msg, err, errdefs.ErrUnauthenticated)
	case errors.As(err, &status):
		switch {
		case status.StatusCode == 401:
			return fmt.Errorf("%s: %v: %w", msg, err, errdefs.ErrUnauthenticated)
		case status.StatusCode == 403:
			return fmt.Errorf("%s: %v: %w", msg, err, errdefs.ErrPermissionDenied)
		case status.StatusCode == 404:
			return fmt.Errorf("%s: %v: %w", msg, err, errdefs.ErrNotFound)
		case status.StatusCode == 429:
			return fmt.Errorf("%s: %v: %w", msg, err, errdefs.ErrResourceExhausted)
		case status.StatusCode >= 500:
			return fmt.Errorf("%s: %v: %w", msg, err, errdefs.ErrUnavailable)
		}
	case errdefs.IsNotFound(err):
		return fmt.Errorf("%s: %w", msg, err)
	case errors.As(err, &tlsErr):
		return fmt.Errorf("%s: %v: %w", msg, err, errdefs.ErrUnavailable)
	case errors.As(err, &dnsErr), errors.As(err, &opErr), errors.Is(err, syscall.ECONNREFUSED),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return fmt.Errorf("%s: registry not reachable: %v: %w", msg, err, errdefs.ErrUnavailable)
	case errors.As(err, &urlErr), errors.As(err, &netErr):
		return fmt.Errorf("%s: registry request failed: %v: %w", msg, err, errdefs.ErrUnavailable)
	}
	return fmt.Errorf("%s: %w", msg, err)
}

// flightGroup runs one pull per key at a time; callers with the same key
// wait for the running one. The shared pull runs on a context detached from
// any single caller and is cancelled when the last waiting caller leaves.
type flightGroup struct {
	mu    sync.Mutex
	calls map[string]*flightCall
}

type flightCall struct {
	done    chan struct{}
	img     Image
	err     error
	waiters int
	cancel  context.CancelFunc
}

func (g *flightGroup) do(ctx context.Context, key string, fn func(context.Context) (Image, error)) (Image, error) {
	g.mu.Lock()
	if g.calls == nil {
		g.calls = map[string]*flightCall{}
	}
	c, ok := g.calls[key]
	if !ok {
		cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		c = &flightCall{done: make(chan struct{}), cancel: cancel}
		g.calls[key] = c
		go func() {
			defer close(c.done)
			defer cancel()
			c.img, c.err = fn(cctx)
			g.mu.Lock()
			if g.calls[key] == c {
				delete(g.calls, key)
			}
			g.mu.Unlock()
		}()
	}
	c.waiters++
	g.mu.Unlock()

	select {
	case <-c.done:
		return c.img, c.err
	case <-ctx.Done():
		g.mu.Lock()
		c.waiters--
		if c.waiters == 0 {
			c.cancel()
			if g.calls[key] == c {
				delete(g.calls, key) // a later caller starts afresh
			}
		}
		g.mu.Unlock()
		return Image{}, fmt.Errorf("pulling image: %w", ctx.Err())
	}
}
