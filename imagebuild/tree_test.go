package imagebuild

import (
	"archive/tar"
	"bytes"
	"io"
	"testing"
)

func TestTreeTarIsDeterministicAndOrdered(t *testing.T) {
	build := func() []byte {
		tr := NewTree()
		tr.Hardlinks([]string{"bin/busybox", "bin/sh", "bin/[", "bin/ls"}, 0o755, []byte("BB"))
		tr.File("etc/passwd", 0o644, []byte("root:x:0:0::/root:/bin/sh\n"))
		tr.Symlink("lib64/ld.so", "/lib/ld.so")
		tr.Dir("tmp", 0o1777)
		tr.FileOwned("usr/local/bin/nnp", 0o4755, 0, 0, []byte("x"))
		tr.Whiteout("data/gone")
		b, err := tr.Tar()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	a, b := build(), build()
	if !bytes.Equal(a, b) {
		t.Fatal("two renders of the same tree differ")
	}

	type hdr struct {
		name, link string
		typ        byte
		mode       int64
	}
	var got []hdr
	r := tar.NewReader(bytes.NewReader(a))
	for {
		h, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(Epoch) || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
			t.Errorf("%s: not normalized: mtime %v uid %d gid %d uname %q gname %q", h.Name, h.ModTime, h.Uid, h.Gid, h.Uname, h.Gname)
		}
		got = append(got, hdr{h.Name, h.Linkname, h.Typeflag, h.Mode})
	}
	want := []hdr{
		{"bin/", "", tar.TypeDir, 0o755},
		{"bin/[", "", tar.TypeReg, 0o755}, // first name in order carries the data
		{"bin/busybox", "bin/[", tar.TypeLink, 0o755},
		{"bin/ls", "bin/[", tar.TypeLink, 0o755},
		{"bin/sh", "bin/[", tar.TypeLink, 0o755},
		{"data/", "", tar.TypeDir, 0o755},
		{"data/.wh.gone", "", tar.TypeReg, 0o644},
		{"etc/", "", tar.TypeDir, 0o755},
		{"etc/passwd", "", tar.TypeReg, 0o644},
		{"lib64/", "", tar.TypeDir, 0o755},
		{"lib64/ld.so", "/lib/ld.so", tar.TypeSymlink, 0o777},
		{"tmp/", "", tar.TypeDir, 0o1777},
		{"usr/", "", tar.TypeDir, 0o755},
		{"usr/local/", "", tar.TypeDir, 0o755},
		{"usr/local/bin/", "", tar.TypeDir, 0o755},
		{"usr/local/bin/nnp", "", tar.TypeReg, 0o4755},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d entries %v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("entry %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

// TestLayerIsDeterministic: the same tree gives the same layer digest,
// whatever the order it was filled in.
func TestLayerIsDeterministic(t *testing.T) {
	a, b := NewTree(), NewTree()
	a.File("/usr/local/bin/x", 0o755, []byte("x"))
	a.Symlink("/bin/sh", "busybox")
	b.Symlink("/bin/sh", "busybox")
	b.File("/usr/local/bin/x", 0o755, []byte("x"))
	la, err := a.Layer()
	if err != nil {
		t.Fatal(err)
	}
	lb, err := b.Layer()
	if err != nil {
		t.Fatal(err)
	}
	da, _ := la.Digest()
	db, _ := lb.Digest()
	if da != db {
		t.Errorf("digests differ: %s %s", da, db)
	}
}
