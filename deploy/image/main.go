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
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/cri-containerd/cri-containerd/imagebuild"
)

// debPackages are unpacked into the base layer: iptables and what it links.
var debPackages = []string{
	"libc6", "busybox", "iptables", "libip4tc2", "libip6tc2", "libxtables12",
	"libnetfilter-conntrack3", "libnfnetlink0", "libnftnl11", "libmnl0",
}

// Repository is the image's repository name in the registry.
const Repository = "cri-containerd/cri-containerd"

var created = v1.Time{Time: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)}

func logf(format string, args ...any) { fmt.Fprintf(os.Stderr, "image: "+format+"\n", args...) }

func main() {
	defReg := os.Getenv("REGISTRY")
	if defReg == "" {
		defReg = "127.0.0.1:5000"
	}
	registry := flag.String("registry", defReg, "registry host:port to push to (plain http for loopback)")
	binary := flag.String("binary", "_output/static/cri-containerd", "static cri-containerd binary")
	logWriter := flag.String("log-writer", "_output/static/cri-containerd-log-writer", "static cri-containerd-log-writer binary (installed next to the daemon)")
	tag := flag.String("tag", "dev", "image tag (also pushed as latest)")
	cacheDir := flag.String("cache-dir", "/var/cache/cri-containerd-image", "cache of the Debian packages")
	caBundle := flag.String("ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "CA bundle put into the image")
	out := flag.String("out", "_output/image.json", "where to write the pushed reference and digest")
	flag.Parse()
	if err := build(*registry, *binary, *logWriter, *tag, *cacheDir, *caBundle, *out); err != nil {
		logf("%v", err)
		os.Exit(1)
	}
}

func build(registry, binary, logWriter, tag, cacheDir, caBundle, out string) error {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return err
	}
	writer, err := os.ReadFile(logWriter)
	if err != nil {
		return err
	}
	defCfg, err := exec.Command(binary, "config", "default").Output()
	if err != nil {
		return fmt.Errorf("%s config default: %w", binary, err)
	}
	debs, err := imagebuild.FetchDebs(cacheDir, debPackages, logf)
	if err != nil {
		return err
	}
	roots := debs.Roots
	base := imagebuild.NewTree()
	for _, p := range debPackages {
		if err := base.AddDir(roots[p], "/usr/share"); err != nil { // docs, man pages
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	applets, err := debs.BusyboxApplets()
	if err != nil {
		return err
	}
	for _, a := range applets {
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

	app := imagebuild.NewTree()
	app.File("/usr/local/bin/cri-containerd", 0o755, bin)
	app.File("/usr/local/bin/cri-containerd-log-writer", 0o755, writer)
	app.File("/etc/cri-containerd/config.toml", 0o644, defCfg)

	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, l := range []struct {
		t   *imagebuild.Tree
		why string
	}{{base, "libc, busybox, iptables (Debian " + strings.Join(debVersions(roots), ", ") + "), CA bundle"}, {app, "cri-containerd, its log writer and its default config"}} {
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

func debVersions(roots map[string]string) []string {
	var vs []string
	for _, p := range debPackages {
		vs = append(vs, filepath.Base(roots[p]))
	}
	return vs
}
