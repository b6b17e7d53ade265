// Command image builds the cri-containerd container image (for the
// DaemonSet in deploy/kubernetes) with go-containerregistry, without a
// container engine, and pushes it to a registry.
//
// The image holds what the daemon and the programs it runs need inside its
// container:
//
//   - /usr/local/bin/cri-containerd: the static daemon (CGO_ENABLED=0);
//   - /etc/cri-containerd/config.toml: `cri-containerd config default`;
//   - iptables (nf_tables as `iptables`, legacy as `iptables-legacy`) with its
//     libraries and libc, from Debian's packages: the CNI plugins the daemon
//     execs (bridge, portmap) run in the daemon's mount namespace and call it;
//   - busybox (a shell for the DaemonSet's start command and for debugging);
//   - the CA bundle of the build host (pulls are made by the daemon).
//
// Layers are deterministic (sorted entries, mtime 0, uid/gid 0): the same
// inputs give the same digest.
//
// Usage (from the module root; `make image` builds the binary first):
//
//	go run ./deploy/image --binary _output/static/cri-containerd --registry 127.0.0.1:5000 --tag dev
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// debPackages are unpacked into the base layer: iptables and what it links.
var debPackages = []string{
	"libc6", "busybox", "iptables", "libip4tc2", "libip6tc2", "libxtables12",
	"libnetfilter-conntrack3", "libnfnetlink0", "libnftnl11", "libmnl0",
}

// Repository is the image's repository name in the registry.
const Repository = "cri-containerd/cri-containerd"

var (
	epoch   = time.Unix(0, 0).UTC()
	created = v1.Time{Time: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)}
)

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, "image: "+format+"\n", args...) }

func main() {
	defReg := os.Getenv("REGISTRY")
	if defReg == "" {
		defReg = "127.0.0.1:5000"
	}
	registry := flag.String("registry", defReg, "registry host:port to push to (plain http for loopback)")
	binary := flag.String("binary", "_output/static/cri-containerd", "static cri-containerd binary")
	tag := flag.String("tag", "dev", "image tag (also pushed as latest)")
	cacheDir := flag.String("cache-dir", "/var/cache/cri-containerd-image", "cache of the Debian packages")
	caBundle := flag.String("ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "CA bundle put into the image")
	out := flag.String("out", "_output/image.json", "where to write the pushed reference and digest")
	flag.Parse()
	if err := build(*registry, *binary, *tag, *cacheDir, *caBundle, *out); err != nil {
		logf("%v", err)
		os.Exit(1)
	}
}

func build(registry, binary, tag, cacheDir, caBundle, out string) error {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	defCfg, err := exec.Command(binary, "config", "default").Output()
	if err != nil {
		return fmt.Errorf("%s config default: %w", binary, err)
	}
	roots, err := unpackDebs(cacheDir)
	if err != nil {
		return err
	}
	base := newTree()
	for _, p := range debPackages {
		if err := base.AddDir(roots[p], "/usr/share"); err != nil { // docs, man pages
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	applets, err := exec.Command(filepath.Join(roots["busybox"], "bin/busybox"), "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	for _, a := range strings.Fields(string(applets)) {
		if !base.Has("/bin/"+a) && !base.Has("/usr/bin/"+a) && !base.Has("/sbin/"+a) && !base.Has("/usr/sbin/"+a) {
			base.Symlink("/bin/"+a, "busybox")
		}
	}
	// Debian's alternatives: iptables is nf_tables, the default of Debian 12
	// and of current distributions; iptables-legacy is there for old hosts.
	for _, fam := range []string{"iptables", "ip6tables"} {
		for _, suf := range []string{"", "-save", "-restore"} {
			base.Symlink("/usr/sbin/"+fam+suf, fam+"-nft"+suf)
		}
	}
	ca, err := os.ReadFile(caBundle)
	if err != nil {
		return err
	}
	base.File("/etc/ssl/certs/ca-certificates.crt", 0o644, ca)
	base.File("/etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"))
	base.File("/etc/group", 0o644, []byte("root:x:0:\nnogroup:x:65534:\n"))
	base.File("/etc/nsswitch.conf", 0o644, []byte("hosts: files dns\n"))
	for _, d := range []string{"/tmp", "/root", "/run", "/var/lib/cri-containerd", "/run/cri-containerd", "/etc/cni/net.d", "/opt/cni/bin", "/var/log/pods"} {
		base.Dir(d, 0o755)
	}

	app := newTree()
	app.File("/usr/local/bin/cri-containerd", 0o755, bin)
	app.File("/etc/cri-containerd/config.toml", 0o644, defCfg)

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, l := range []struct {
		t   *tree
		why string
	}{{base, "libc, busybox, iptables (Debian " + strings.Join(debVersions(roots), ", ") + "), CA bundle"}, {app, "cri-containerd and its default config"}} {
		layer, err := l.t.Layer()
		if err != nil {
			return err
		}
		if img, err = mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: types.OCILayer,
			History: v1.History{Created: created, CreatedBy: l.why, Comment: "cri-containerd deploy/image"}}); err != nil {
			return err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.Architecture, cf.OS, cf.Created = "amd64", "linux", created
	cf.Config = v1.Config{
		Entrypoint: []string{"/usr/local/bin/cri-containerd"},
		Cmd:        []string{"--config", "/etc/cri-containerd/config.toml"},
		Env:        []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Labels: map[string]string{
			"org.opencontainers.image.title":   "cri-containerd",
			"org.opencontainers.image.version": tag,
		},
	}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return err
	}
	dig, err := img.Digest()
	if err != nil {
		return err
	}
	opts := []remote.Option{remote.WithContext(context.Background()), remote.WithAuth(authn.Anonymous)}
	var refs []string
	for _, t := range []string{tag, "latest"} {
		ref, err := name.NewTag(registry+"/"+Repository+":"+t, name.Insecure)
		if err != nil {
			return err
		}
		if err := remote.Write(ref, img, opts...); err != nil {
			return fmt.Errorf("pushing %s: %w", ref, err)
		}
		refs = append(refs, ref.String())
	}
	logf("pushed %s (%s)", strings.Join(refs, ", "), dig)
	b, err := json.MarshalIndent(map[string]any{"refs": refs, "digest": dig.String(),
		"pinned": registry + "/" + Repository + "@" + dig.String()}, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
		return err
	}
	fmt.Println(registry + "/" + Repository + "@" + dig.String())
	return nil
}

// unpackDebs downloads (once, apt-get download) and unpacks (once,
// dpkg-deb -x) the Debian packages; it returns their roots.
func unpackDebs(cacheDir string) (map[string]string, error) {
	debDir := filepath.Join(cacheDir, "debs")
	if err := os.MkdirAll(debDir, 0o755); err != nil {
		return nil, err
	}
	var missing []string
	for _, p := range debPackages {
		if latestDeb(debDir, p) == "" {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		logf("downloading Debian packages %v into %s", missing, debDir)
		cmd := exec.Command("apt-get", append([]string{"-q", "download"}, missing...)...)
		cmd.Dir = debDir
		if o, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("apt-get download: %w\n%s", err, o)
		}
	}
	roots := map[string]string{}
	for _, p := range debPackages {
		deb := latestDeb(debDir, p)
		if deb == "" {
			return nil, fmt.Errorf("no .deb for %s in %s", p, debDir)
		}
		root := filepath.Join(cacheDir, "unpacked", strings.TrimSuffix(filepath.Base(deb), ".deb"))
		if _, err := os.Stat(root + ".done"); err != nil {
			_ = os.RemoveAll(root)
			if err := os.MkdirAll(root, 0o755); err != nil {
				return nil, err
			}
			if o, err := exec.Command("dpkg-deb", "-x", deb, root).CombinedOutput(); err != nil {
				return nil, fmt.Errorf("dpkg-deb -x %s: %w\n%s", deb, err, o)
			}
			if err := os.WriteFile(root+".done", nil, 0o644); err != nil {
				return nil, err
			}
		}
		roots[p] = root
	}
	return roots, nil
}

func latestDeb(dir, pkg string) string {
	m, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
	if len(m) == 0 {
		return ""
	}
	sort.Strings(m)
	return m[len(m)-1]
}

func debVersions(roots map[string]string) []string {
	var vs []string
	for _, p := range debPackages {
		vs = append(vs, filepath.Base(roots[p]))
	}
	return vs
}

// tree is a file system layer under construction.
type tree struct{ entries map[string]*entry }

type entry struct {
	typ    byte
	mode   int64
	data   []byte
	target string
}

func newTree() *tree { return &tree{entries: map[string]*entry{}} }

func clean(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }

func (t *tree) parents(p string) {
	for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
		if _, ok := t.entries[d]; !ok {
			t.entries[d] = &entry{typ: tar.TypeDir, mode: 0o755}
		}
	}
}

func (t *tree) Has(p string) bool { _, ok := t.entries[clean(p)]; return ok }

func (t *tree) Dir(p string, mode int64) {
	p = clean(p)
	t.parents(p)
	t.entries[p] = &entry{typ: tar.TypeDir, mode: mode}
}

func (t *tree) File(p string, mode int64, data []byte) {
	p = clean(p)
	t.parents(p)
	t.entries[p] = &entry{typ: tar.TypeReg, mode: mode, data: data}
}

func (t *tree) Symlink(p, target string) {
	p = clean(p)
	t.parents(p)
	t.entries[p] = &entry{typ: tar.TypeSymlink, mode: 0o777, target: target}
}

// AddDir copies the directory tree at root (regular files, directories,
// symlinks) into t, skipping what is under skip.
func (t *tree) AddDir(root, skip string) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil || rel == "." {
			return err
		}
		rel = "/" + filepath.ToSlash(rel)
		if rel == skip || strings.HasPrefix(rel, skip+"/") {
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

// Layer renders the tree as a deterministic gzip-compressed OCI layer.
func (t *tree) Layer() (v1.Layer, error) {
	names := make([]string, 0, len(t.entries))
	for n := range t.entries {
		names = append(names, n)
	}
	sort.Strings(names)
	var raw bytes.Buffer
	tw := tar.NewWriter(&raw)
	for _, n := range names {
		e := t.entries[n]
		h := &tar.Header{Name: n, Mode: e.mode, ModTime: epoch, Typeflag: e.typ}
		switch e.typ {
		case tar.TypeDir:
			h.Name = n + "/"
		case tar.TypeSymlink:
			h.Linkname = e.target
		case tar.TypeReg:
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, fmt.Errorf("%s: %w", n, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	var gz bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	b := gz.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer))
}
