package image

import (
	"container/list"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"

	contentapi "github.com/containerd/containerd/api/services/content/v1"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/images/usage"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/identity"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"google.golang.org/grpc"
)

// infoCacheSize bounds the info cache (entries are an image config each,
// a few KiB).
const infoCacheSize = 128

// imageInfo returns the ID-level facts (ID, chain ID, size, config) of the
// image whose record target is target, for the default platform. It reuses
// what the store knows when some cached name already points at target
// (the content of a target in use cannot be gone), and with recent set, the
// facts computed for target lately even when no name points at it any more
// (callers that just pulled target: its content is there). Otherwise it
// reads the manifest and config from containerd, each blob once.
func (s *Service) imageInfo(ctx context.Context, name string, target ocispec.Descriptor, recent bool) (Image, error) {
	key := target.Digest.String()
	if img, ok := s.store.infoByTarget(key); ok {
		return img, nil
	}
	if recent {
		if img, ok := s.infos.get(key); ok {
			return img, nil
		}
	}
	img, err := computeInfo(ctx, &blobMemo{read: s.readBlob, info: s.content}, name, target)
	if err != nil {
		return Image{}, err
	}
	s.infos.put(key, img)
	return img, nil
}

// computeInfo reads the facts containerd's client.Image would report
// (Config, Spec, RootFS, Size with the default platform) through p, which
// should memoize blobs: manifest and config are needed more than once.
func computeInfo(ctx context.Context, p content.InfoReaderProvider, name string, target ocispec.Descriptor) (Image, error) {
	platform := platforms.Default()
	configDesc, err := images.Config(ctx, p, target, platform)
	if err != nil {
		return Image{}, fmt.Errorf("reading config descriptor of %q: %w", name, err)
	}
	blob, err := content.ReadBlob(ctx, p, configDesc)
	if err != nil {
		return Image{}, fmt.Errorf("reading config of %q: read image config from content store: %w", name, err)
	}
	var spec ocispec.Image
	if err := json.Unmarshal(blob, &spec); err != nil {
		return Image{}, fmt.Errorf("reading config of %q: unmarshal image config %s: %w", name, blob, err)
	}
	size, err := usage.CalculateImageUsage(ctx, images.Image{Name: name, Target: target}, p,
		usage.WithManifestLimit(platform, 1), usage.WithManifestUsage())
	if err != nil {
		return Image{}, fmt.Errorf("computing size of %q: %w", name, err)
	}
	return Image{
		ID:      configDesc.Digest.String(),
		ChainID: identity.ChainID(spec.RootFS.DiffIDs).String(),
		Size:    size,
		Config:  spec,
	}, nil
}

// blobMemo is a content provider reading each blob once (with read) and
// serving it from memory afterwards; it lives for one computeInfo.
type blobMemo struct {
	read func(context.Context, ocispec.Descriptor) ([]byte, error)
	info content.InfoProvider

	mu    sync.Mutex
	blobs map[digest.Digest][]byte
}

func (m *blobMemo) Info(ctx context.Context, dgst digest.Digest) (content.Info, error) {
	return m.info.Info(ctx, dgst)
}

func (m *blobMemo) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	m.mu.Lock()
	b, ok := m.blobs[desc.Digest]
	m.mu.Unlock()
	if !ok {
		var err error
		if b, err = m.read(ctx, desc); err != nil {
			return nil, err
		}
		m.mu.Lock()
		if m.blobs == nil {
			m.blobs = map[digest.Digest][]byte{}
		}
		m.blobs[desc.Digest] = b
		m.mu.Unlock()
	}
	return bytesReaderAt(b), nil
}

type bytesReaderAt []byte

func (b bytesReaderAt) Size() int64  { return int64(len(b)) }
func (b bytesReaderAt) Close() error { return nil }
func (b bytesReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("negative offset")
	}
	if off >= int64(len(b)) {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	n := copy(p, b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// blobReader returns a function reading a whole blob. Over a gRPC
// connection it is one streaming Read (the content proxy's ReaderAt asks
// for the blob's Info first: two round trips per blob); otherwise it goes
// through cs.
func blobReader(conn any, cs content.Provider) func(context.Context, ocispec.Descriptor) ([]byte, error) {
	if gc, ok := conn.(*grpc.ClientConn); ok && gc != nil {
		cc := contentapi.NewContentClient(gc)
		return func(ctx context.Context, desc ocispec.Descriptor) ([]byte, error) {
			return readBlobGRPC(ctx, cc, desc)
		}
	}
	return func(ctx context.Context, desc ocispec.Descriptor) ([]byte, error) {
		ra, err := cs.ReaderAt(ctx, desc)
		if err != nil {
			return nil, err
		}
		defer ra.Close()
		p := make([]byte, ra.Size())
		n, err := ra.ReadAt(p, 0)
		if err == io.EOF && int64(n) == ra.Size() {
			err = nil
		}
		return p, err
	}
}

func readBlobGRPC(ctx context.Context, cc contentapi.ContentClient, desc ocispec.Descriptor) ([]byte, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream
	// Size 0: the whole blob.
	rc, err := cc.Read(ctx, &contentapi.ReadContentRequest{Digest: desc.Digest.String()})
	if err != nil {
		return nil, errgrpc.ToNative(err)
	}
	var buf []byte
	if desc.Size > 0 && desc.Size < 16<<20 {
		buf = make([]byte, 0, desc.Size)
	}
	for {
		resp, err := rc.Recv()
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, errgrpc.ToNative(err)
		}
		buf = append(buf, resp.Data...)
	}
}

// infoCache is a bounded LRU of image facts by target digest.
type infoCache struct {
	mu  sync.Mutex
	max int
	ll  *list.List // of *infoEntry, most recent first
	m   map[string]*list.Element
}

type infoEntry struct {
	key string
	img Image
}

func newInfoCache(max int) *infoCache {
	return &infoCache{max: max, ll: list.New(), m: map[string]*list.Element{}}
}

func (c *infoCache) get(key string) (Image, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[key]; ok {
		c.ll.MoveToFront(el)
		return el.Value.(*infoEntry).img, true
	}
	return Image{}, false
}

func (c *infoCache) put(key string, img Image) {
	img.RepoTags, img.RepoDigests, img.References, img.Pinned = nil, nil, nil, false
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[key]; ok {
		el.Value.(*infoEntry).img = img
		c.ll.MoveToFront(el)
		return
	}
	c.m[key] = c.ll.PushFront(&infoEntry{key: key, img: img})
	for c.ll.Len() > c.max {
		last := c.ll.Back()
		c.ll.Remove(last)
		delete(c.m, last.Value.(*infoEntry).key)
	}
}
