package framework

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestRegistry is an in-memory registry (go-containerregistry) on
// 127.0.0.1:<random port>, plain HTTP, optionally behind basic auth.
type TestRegistry struct {
	Host     string // 127.0.0.1:PORT
	Username string
	Password string
	// StallBlobs, when set, makes every blob download send its first bytes
	// and then hang (for pull progress timeout tests).
	StallBlobs atomic.Bool
	// Requests counts handled requests.
	Requests atomic.Int64
	srv      *http.Server
}

// StartTestRegistry starts a registry; with username != "" every request
// needs HTTP basic auth with username/password (401 + Basic challenge
// otherwise).
func StartTestRegistry(t testing.TB, username, password string) *TestRegistry {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &TestRegistry{Host: l.Addr().String(), Username: username, Password: password}
	inner := ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0)))
	r.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.Requests.Add(1)
		if username != "" {
			u, p, ok := req.BasicAuth()
			if !ok || u != username || p != password {
				w.Header().Set("WWW-Authenticate", `Basic realm="cri-e2e"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
				return
			}
		}
		if req.Method == http.MethodGet && strings.Contains(req.URL.Path, "/blobs/sha256:") {
			// The registry package only understands "bytes=a-b" ranges; a
			// resumed download asks "bytes=a-". Serve the whole blob then,
			// as registries that ignore ranges do (the client skips ahead).
			if rg := req.Header.Get("Range"); strings.HasSuffix(rg, "-") {
				req.Header.Del("Range")
			}
			if r.StallBlobs.Load() {
				inner.ServeHTTP(&stallingWriter{ResponseWriter: w, ctx: req.Context(), limit: 512}, req)
				return
			}
		}
		inner.ServeHTTP(w, req)
	}), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = r.srv.Serve(l) }()
	t.Cleanup(func() { _ = r.srv.Close() })
	return r
}

// PushedImage describes an image pushed to a TestRegistry.
type PushedImage struct {
	Ref            string // host/repo:tag
	Repo           string // host/repo
	ManifestDigest string // sha256:... (the repo digest)
	ConfigDigest   string // sha256:... (the CRI image ID)
	Size           int64
}

// PushRandomImage pushes a random single-platform image (layers of
// layerSize random bytes) with config User user to repo:tag.
func (r *TestRegistry) PushRandomImage(t testing.TB, repoTag string, layers int64, layerSize int64, user string) PushedImage {
	t.Helper()
	img, err := random.Image(layerSize, layers)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config.User = user
	cf.Config.Cmd = []string{"/bin/true"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return r.Push(t, repoTag, img)
}

// Push pushes img as repo:tag.
func (r *TestRegistry) Push(t testing.TB, repoTag string, img v1.Image) PushedImage {
	t.Helper()
	ref, err := name.ParseReference(r.Host+"/"+repoTag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	opts := []remote.Option{}
	if r.Username != "" {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: r.Username, Password: r.Password}))
	}
	if err := remote.Write(ref, img, opts...); err != nil {
		t.Fatalf("pushing %s: %v", ref, err)
	}
	md, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	cd, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	size, err := img.Size()
	if err != nil {
		t.Fatal(err)
	}
	return PushedImage{
		Ref:            ref.Name(),
		Repo:           ref.Context().Name(),
		ManifestDigest: md.String(),
		ConfigDigest:   cd.String(),
		Size:           size,
	}
}

// String implements fmt.Stringer.
func (p PushedImage) String() string {
	return fmt.Sprintf("%s (id %s, digest %s)", p.Ref, p.ConfigDigest, p.ManifestDigest)
}

// Fetch reads an image back from the registry (to push it under other names).
func (r *TestRegistry) Fetch(t testing.TB, ref string) v1.Image {
	t.Helper()
	parsed, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	opts := []remote.Option{}
	if r.Username != "" {
		opts = append(opts, remote.WithAuth(&authn.Basic{Username: r.Username, Password: r.Password}))
	}
	img, err := remote.Image(parsed, opts...)
	if err != nil {
		t.Fatalf("fetching %s: %v", ref, err)
	}
	return img
}

// stallingWriter passes the first limit body bytes through, then blocks
// until the request ends: a download that stops making progress.
type stallingWriter struct {
	http.ResponseWriter
	ctx     context.Context
	limit   int
	written int
}

func (w *stallingWriter) Write(p []byte) (int, error) {
	if room := w.limit - w.written; room > 0 {
		n, err := w.ResponseWriter.Write(p[:min(room, len(p))])
		w.written += n
		if f, ok := w.ResponseWriter.(http.Flusher); ok {
			f.Flush()
		}
		if err != nil || n == len(p) {
			return n, err
		}
	}
	select {
	case <-w.ctx.Done():
	case <-time.After(5 * time.Minute):
	}
	return 0, w.ctx.Err()
}
