package main

import (
	"archive/tar"
	"bytes"
	"io"
	"testing"
)

func TestTreeTarIsDeterministicAndOrdered(t *testing.T) {
	build := func() []byte {
		tr := newTree()
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
		if !h.ModTime.Equal(epoch) || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" {
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

func TestLocalRef(t *testing.T) {
	for in, want := range map[string]string{
		"registry.k8s.io/e2e-test-images/busybox:1.29-2":          "127.0.0.1:5000/e2e-test-images/busybox:1.29-2",
		"docker.io/library/busybox:latest":                        "127.0.0.1:5000/library/busybox:latest",
		"public.ecr.aws/docker/library/busybox:1-musl":            "127.0.0.1:5000/docker/library/busybox:1-musl",
		"gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64:latest": "127.0.0.1:5000/k8s-staging-cri-tools/hostnet-nginx-amd64:latest",
		"k8s.gcr.io/pause:3.9":                                    "127.0.0.1:5000/pause:3.9",
	} {
		got, err := localRef("127.0.0.1:5000", in)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		if got.String() != want {
			t.Errorf("%s: got %s, want %s", in, got, want)
		}
	}
}

func TestCatalogHasNoConflictingTags(t *testing.T) {
	seen := map[string]int{}
	for i, d := range catalog {
		if len(d.refs) == 0 || d.build == nil {
			t.Fatalf("catalog entry %d is incomplete", i)
		}
		for _, r := range d.refs {
			l, err := localRef("127.0.0.1:5000", r)
			if err != nil {
				t.Fatal(err)
			}
			if j, ok := seen[l.String()]; ok && j != i {
				// Only allowed when both entries are meant to be one image,
				// which the catalog expresses by listing both refs in one entry.
				t.Errorf("%s (entry %d) and entry %d map to the same local tag %s", r, i, j, l)
			}
			seen[l.String()] = i
		}
	}
}
