package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// epoch is the modification time of every layer entry.
var epoch = time.Unix(0, 0).UTC()

type entry struct {
	typ      byte // tar.TypeDir, TypeReg, TypeSymlink, TypeLink (group member), whiteout = TypeReg with empty data
	mode     int64
	uid, gid int
	data     []byte
	target   string // symlink target
	group    string // hardlink group key (all members share one inode)
}

// tree is an in-memory file system that becomes one deterministic layer:
// entries sorted by name, mtime 0, numeric owners only, no user/group names.
type tree struct {
	entries map[string]*entry
}

func newTree() *tree { return &tree{entries: map[string]*entry{}} }

func clean(p string) string {
	p = path.Clean("/" + p)
	return strings.TrimPrefix(p, "/")
}

func (t *tree) parents(p string) {
	for d := path.Dir(p); d != "." && d != "/" && d != ""; d = path.Dir(d) {
		if _, ok := t.entries[d]; !ok {
			t.entries[d] = &entry{typ: tar.TypeDir, mode: 0o755}
		}
	}
}

// Dir adds a directory (and its missing parents, mode 0755).
func (t *tree) Dir(p string, mode int64) *tree {
	p = clean(p)
	t.parents(p)
	t.entries[p] = &entry{typ: tar.TypeDir, mode: mode}
	return t
}

// DirOwned adds a directory with the given numeric owner.
func (t *tree) DirOwned(p string, mode int64, uid, gid int) *tree {
	p = clean(p)
	t.parents(p)
	t.entries[p] = &entry{typ: tar.TypeDir, mode: mode, uid: uid, gid: gid}
	return t
}

// File adds a regular file owned by root.
func (t *tree) File(p string, mode int64, data []byte) *tree {
	return t.FileOwned(p, mode, 0, 0, data)
}

// FileOwned adds a regular file with the given numeric owner.
func (t *tree) FileOwned(p string, mode int64, uid, gid int, data []byte) *tree {
	p = clean(p)
	t.parents(p)
	t.entries[p] = &entry{typ: tar.TypeReg, mode: mode, uid: uid, gid: gid, data: data}
	return t
}

// Symlink adds a symbolic link.
func (t *tree) Symlink(p, target string) *tree {
	p = clean(p)
	t.parents(p)
	t.entries[p] = &entry{typ: tar.TypeSymlink, mode: 0o777, target: target}
	return t
}

// Hardlinks adds the same regular file under every name in names: one inode,
// several directory entries. The first name in sorted order carries the data
// in the tar stream, the others are hard links to it.
func (t *tree) Hardlinks(names []string, mode int64, data []byte) *tree {
	key := clean(names[0])
	for _, n := range names {
		n = clean(n)
		t.parents(n)
		t.entries[n] = &entry{typ: tar.TypeReg, mode: mode, data: data, group: key}
	}
	return t
}

// Whiteout deletes p (from lower layers) in this layer.
func (t *tree) Whiteout(p string) *tree {
	p = clean(p)
	t.parents(p)
	t.entries[path.Join(path.Dir(p), ".wh."+path.Base(p))] = &entry{typ: tar.TypeReg, mode: 0o644}
	return t
}

// Tar renders the tree as a deterministic, uncompressed tar stream.
func (t *tree) Tar() ([]byte, error) {
	names := make([]string, 0, len(t.entries))
	for n := range t.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	first := map[string]string{} // hardlink group -> name written with data
	for _, n := range names {
		e := t.entries[n]
		h := &tar.Header{
			Name:    n,
			Mode:    e.mode,
			Uid:     e.uid,
			Gid:     e.gid,
			ModTime: epoch,
		}
		switch e.typ {
		case tar.TypeDir:
			h.Typeflag = tar.TypeDir
			h.Name = n + "/"
		case tar.TypeSymlink:
			h.Typeflag = tar.TypeSymlink
			h.Linkname = e.target
		case tar.TypeReg:
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
			if e.group != "" {
				if f, ok := first[e.group]; ok {
					h.Typeflag = tar.TypeLink
					h.Linkname = f
					h.Size = 0
				} else {
					first[e.group] = n
				}
			}
		default:
			return nil, fmt.Errorf("%s: unknown entry type %q", n, e.typ)
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		if h.Typeflag == tar.TypeReg && len(e.data) > 0 {
			if _, err := tw.Write(e.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Layer renders the tree as a gzip-compressed OCI layer. gzip output is
// deterministic for a given Go release (no name, mtime 0 in the header).
func (t *tree) Layer() (v1.Layer, error) {
	raw, err := t.Tar()
	if err != nil {
		return nil, err
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(raw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	b := gz.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithMediaType(types.OCILayer))
}
