// Package imagebuild builds container images without a container engine:
// deterministic file-system layers from in-memory trees (sorted entries,
// mtime 0, numeric owners only) and inputs taken from Debian packages. The
// DaemonSet image (deploy/image) and the test images (test/e2e/images) are
// made with it, so the same inputs always give the same digests.
package imagebuild

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Epoch is the modification time of every layer entry.
var Epoch = time.Unix(0, 0).UTC()

type entry struct {
	typ      byte // tar.TypeDir, TypeReg, TypeSymlink; a whiteout is an empty TypeReg
	mode     int64
	uid, gid int
	data     []byte
	target   string // symlink target
	group    string // hardlink group key (all members share one inode)
}

// Tree is an in-memory file system that becomes one deterministic layer.
// Paths are absolute or relative to the layer root; missing parents are
// added as root-owned 0755 directories.
type Tree struct {
	entries map[string]*entry
}

// NewTree returns an empty tree.
func NewTree() *Tree { return &Tree{entries: map[string]*entry{}} }

func clean(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }

func (t *Tree) put(p string, e *entry) *Tree {
	p = clean(p)
	for d := path.Dir(p); d != "." && d != "/" && d != ""; d = path.Dir(d) {
		if _, ok := t.entries[d]; !ok {
			t.entries[d] = &entry{typ: tar.TypeDir, mode: 0o755}
		}
	}
	t.entries[p] = e
	return t
}

// Has reports whether p is in the tree.
func (t *Tree) Has(p string) bool { _, ok := t.entries[clean(p)]; return ok }

// Dir adds a root-owned directory.
func (t *Tree) Dir(p string, mode int64) *Tree { return t.DirOwned(p, mode, 0, 0) }

// DirOwned adds a directory with the given numeric owner.
func (t *Tree) DirOwned(p string, mode int64, uid, gid int) *Tree {
	return t.put(p, &entry{typ: tar.TypeDir, mode: mode, uid: uid, gid: gid})
}

// File adds a root-owned regular file.
func (t *Tree) File(p string, mode int64, data []byte) *Tree {
	return t.FileOwned(p, mode, 0, 0, data)
}

// FileOwned adds a regular file with the given numeric owner.
func (t *Tree) FileOwned(p string, mode int64, uid, gid int, data []byte) *Tree {
	return t.put(p, &entry{typ: tar.TypeReg, mode: mode, uid: uid, gid: gid, data: data})
}

// Symlink adds a symbolic link.
func (t *Tree) Symlink(p, target string) *Tree {
	return t.put(p, &entry{typ: tar.TypeSymlink, mode: 0o777, target: target})
}

// Hardlinks adds the same regular file under every name in names: one inode,
// several directory entries. The first name in sorted order carries the data
// in the tar stream, the others are hard links to it.
func (t *Tree) Hardlinks(names []string, mode int64, data []byte) *Tree {
	key := clean(names[0])
	for _, n := range names {
		t.put(n, &entry{typ: tar.TypeReg, mode: mode, data: data, group: key})
	}
	return t
}

// Whiteout deletes p (from lower layers) in this layer.
func (t *Tree) Whiteout(p string) *Tree {
	p = clean(p)
	return t.put(path.Join(path.Dir(p), ".wh."+path.Base(p)), &entry{typ: tar.TypeReg, mode: 0o644})
}

// AddDir copies the directory tree at root (regular files, directories,
// symlinks; root-owned) into t, leaving out skip and what is under it.
func (t *Tree) AddDir(root, skip string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		rel = "/" + filepath.ToSlash(rel)
		if skip != "" && (rel == skip || strings.HasPrefix(rel, skip+"/")) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			t.Dir(rel, int64(fi.Mode().Perm()))
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			t.Symlink(rel, target)
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			t.File(rel, int64(fi.Mode().Perm()), b)
		}
		return nil
	})
}

// Tar renders the tree as a deterministic, uncompressed tar stream.
func (t *Tree) Tar() ([]byte, error) {
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
		h := &tar.Header{Name: n, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: Epoch}
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
func (t *Tree) Layer() (v1.Layer, error) {
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
