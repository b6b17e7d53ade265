package main

import (
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/cri-containerd/cri-containerd/imagebuild"
)

// created is the creation time recorded in every image config and history.
var created = v1.Time{Time: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)}

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// labelKey marks every image built here (not io.cri-containerd.*: that label
// namespace is reserved, runtimes drop it); its value names the variant so
// images that must differ (but share all layers) get distinct configs.
const labelKey = "org.cri-containerd-e2e.image"

// imageDef is one image (or index) and every upstream reference that must
// resolve to it. All refs of one def share one digest.
type imageDef struct {
	refs  []string
	about string
	build func(b *builder) (artifact, error)
}

// artifact is an image or an image index.
type artifact interface {
	Digest() (v1.Hash, error)
	MediaType() (types.MediaType, error)
	RawManifest() ([]byte, error)
}

// catalog lists every image cri-tools' critest v1.37.0 pulls (see
// /work/shared/notes/environment.md) plus a few for cri-containerd's own e2e
// tests (under registry.k8s.io/cri-containerd-e2e/).
var catalog = []imageDef{
	{
		refs: []string{
			"registry.k8s.io/e2e-test-images/busybox:1.29-2",
			"docker.io/library/busybox:latest",
		},
		about: "dynamic Debian busybox + glibc, applets as hard links, ipcs/pgrep; CMD sh",
		build: func(b *builder) (artifact, error) { return b.busybox(nil, v1.Config{Cmd: []string{"sh"}}, "busybox") },
	},
	{
		refs: []string{
			"registry.k8s.io/e2e-test-images/nginx:1.14-2",
			"docker.io/library/nginx:latest",
		},
		about: "busybox + nginx stand-in on :80",
		build: func(b *builder) (artifact, error) { return b.nginx(80, "nginx") },
	},
	{
		refs:  []string{"gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64:latest"},
		about: "busybox + nginx stand-in on :12003",
		build: func(b *builder) (artifact, error) { return b.nginx(12003, "hostnet-nginx") },
	},
	{
		refs:  []string{"registry.k8s.io/e2e-test-images/httpd:2.4.39-4"},
		about: "busybox httpd serving 'It works!' on :80, logs a line with 'httpd'",
		build: (*builder).httpd,
	},
	{
		refs:  []string{"registry.k8s.io/e2e-test-images/nonewprivs:1.3"},
		about: "setuid-root /usr/local/bin/nnp printing 'Effective uid: N'",
		build: func(b *builder) (artifact, error) {
			l := imagebuild.NewTree().FileOwned("usr/local/bin/nnp", 0o4755, 0, 0, b.src.binaries["nnp"])
			return b.busybox([]*imagebuild.Tree{l}, v1.Config{Entrypoint: []string{"/usr/local/bin/nnp"}}, "nonewprivs")
		},
	},
	userImage("test-image-user-uid", "1002"),
	userImage("test-image-user-username", "www-data"),
	userImage("test-image-user-uid-group", "1003:1004"),
	userImage("test-image-user-username-group", "www-data:1004"),
	{
		refs:  []string{"gcr.io/k8s-staging-cri-tools/test-image-predefined-group:latest"},
		about: "busybox + default-user (1000) in group-defined-in-image (50000); USER 1000",
		build: (*builder).predefinedGroup,
	},
	fileImage("gcr.io/k8s-staging-cri-tools/test-image-1:latest", "test-image-1"),
	fileImage("gcr.io/k8s-staging-cri-tools/test-image-2:latest", "test-image-2"),
	fileImage("gcr.io/k8s-staging-cri-tools/test-image-3:latest", "test-image-3"),
	fileImage("gcr.io/k8s-staging-cri-tools/test-image-latest:latest", "test-image-latest"),
	fileImage("gcr.io/k8s-staging-cri-tools/test-image-tag:test", "test-image-tag-test"),
	fileImage("gcr.io/k8s-staging-cri-tools/test-image-tag:all", "test-image-tag-all"),
	fileImage("gcr.io/k8s-staging-cri-tools/test-image-tags:1", "test-image-tags",
		"gcr.io/k8s-staging-cri-tools/test-image-tags:2",
		"gcr.io/k8s-staging-cri-tools/test-image-tags:3"),
	{
		refs: []string{
			"registry.k8s.io/pause:3.10.2",
			"registry.k8s.io/pause:3.10.1",
			"registry.k8s.io/pause:3.10",
		},
		about: "sandbox image: static pause, USER 65535:65535",
		build: func(b *builder) (artifact, error) { return b.pause("pause") },
	},
	{
		refs: []string{
			"registry.k8s.io/pause:3.9",
			"k8s.gcr.io/pause:3.9",
		},
		about: "the same pause program, a different image from the sandbox image",
		build: func(b *builder) (artifact, error) { return b.pause("pause-3.9") },
	},
	ecrBusybox("1.35.0-glibc"),
	ecrBusybox("1-uclibc"),
	ecrBusybox("1"),
	ecrBusybox("1-glibc"),
	ecrBusybox("1-musl"),

	// cri-containerd's own e2e images.
	{
		refs:  []string{"registry.k8s.io/cri-containerd-e2e/layered:1"},
		about: "busybox + 2 layers: /data/{a,b,c}.txt; the top layer whites out b.txt and rewrites a.txt",
		build: (*builder).layered,
	},
	{
		refs: []string{"registry.k8s.io/cri-containerd-e2e/config:1"},
		about: "busybox with ENTRYPOINT [/bin/sh -c], CMD, ENV E2E_IMAGE_ENV=from-image, WORKDIR /work, " +
			"USER www-data, VOLUME /data (holding seed.txt), EXPOSE 8080, STOPSIGNAL SIGUSR1",
		build: (*builder).configImage,
	},
	{
		refs:  []string{"registry.k8s.io/cri-containerd-e2e/multiarch:1"},
		about: "OCI index: linux/amd64 (busybox + /ARCH) and linux/arm64 (only /ARCH)",
		build: (*builder).multiarch,
	},
}

func userImage(name, user string) imageDef {
	return imageDef{
		refs:  []string{"gcr.io/k8s-staging-cri-tools/" + name + ":latest"},
		about: "busybox with USER " + user,
		build: func(b *builder) (artifact, error) {
			return b.busybox(nil, v1.Config{Cmd: []string{"sh"}, User: user}, name)
		},
	}
}

func fileImage(ref, file string, more ...string) imageDef {
	return imageDef{
		refs:  append([]string{ref}, more...),
		about: "busybox + empty /" + file,
		build: func(b *builder) (artifact, error) {
			return b.busybox([]*imagebuild.Tree{imagebuild.NewTree().File(file, 0o644, nil)}, v1.Config{Cmd: []string{"sh"}}, file)
		},
	}
}

func ecrBusybox(tag string) imageDef {
	return imageDef{
		refs:  []string{"public.ecr.aws/docker/library/busybox:" + tag},
		about: "busybox (benchmark image, distinct per tag)",
		build: func(b *builder) (artifact, error) {
			return b.busybox(nil, v1.Config{Cmd: []string{"sh"}}, "ecr-busybox-"+tag)
		},
	}
}

// builder assembles images from shared, lazily built base layers.
type builder struct {
	src          *sources
	busyboxLayer v1.Layer
	pauseLayer   v1.Layer
}

// image stacks layers (each with a history entry) on an empty OCI image and
// sets a complete, deterministic config.
func image(layers []v1.Layer, history []string, cfg v1.Config, variant, arch string) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for i, l := range layers {
		var err error
		img, err = mutate.Append(img, mutate.Addendum{
			Layer:     l,
			History:   v1.History{Created: created, CreatedBy: history[i], Comment: "cri-containerd test/e2e/images"},
			MediaType: types.OCILayer,
		})
		if err != nil {
			return nil, err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Architecture = arch
	cf.OS = "linux"
	cf.Created = created
	if cfg.Labels == nil {
		cfg.Labels = map[string]string{}
	}
	cfg.Labels[labelKey] = variant
	if len(cfg.Env) == 0 || !strings.HasPrefix(cfg.Env[0], "PATH=") {
		cfg.Env = append([]string{"PATH=" + defaultPath}, cfg.Env...)
	}
	cf.Config = cfg
	return mutate.ConfigFile(img, cf)
}

// busyboxTree is the root file system of the busybox test image.
func (b *builder) busyboxTree() (*imagebuild.Tree, error) {
	t := imagebuild.NewTree()
	bb, err := b.src.debs.ReadFile("busybox", "bin/busybox")
	if err != nil {
		return nil, err
	}
	applets, err := b.src.debs.BusyboxApplets()
	if err != nil {
		return nil, err
	}
	names := []string{"bin/busybox"}
	for _, a := range applets {
		if a == "ipcs" || a == "pgrep" || strings.Contains(a, "/") {
			continue
		}
		names = append(names, "bin/"+a)
	}
	// Every applet is a hard link to busybox: a masked /bin/ls must not mask
	// busybox itself, which a symlink would.
	t.Hardlinks(names, 0o755, bb)
	t.File("bin/ipcs", 0o755, b.src.binaries["ipcs"])
	t.File("bin/pgrep", 0o755, b.src.binaries["pgrep"])

	// glibc: the loader and what busybox links (libc, libresolv), plus the
	// NSS modules getpwnam & co. may load.
	const libdir = "lib/x86_64-linux-gnu"
	for _, lib := range []string{"ld-linux-x86-64.so.2", "libc.so.6", "libresolv.so.2", "libm.so.6", "libnss_files.so.2", "libnss_dns.so.2"} {
		data, err := b.src.debs.ReadFile("libc6", path.Join(libdir, lib))
		if err != nil {
			return nil, err
		}
		t.File(path.Join(libdir, lib), 0o755, data)
	}
	t.Symlink("lib64/ld-linux-x86-64.so.2", "/"+libdir+"/ld-linux-x86-64.so.2")

	// The directories and account files of the upstream busybox image.
	for _, d := range []string{"dev", "proc", "sys", "home", "usr/sbin", "usr/bin", "var/spool/mail", "var/www", "var/run", "etc"} {
		t.Dir(d, 0o755)
	}
	t.Dir("root", 0o700)
	t.Dir("tmp", 0o1777)
	t.File("etc/passwd", 0o644, []byte(passwd))
	t.File("etc/group", 0o644, []byte(group))
	t.File("etc/shadow", 0o640, []byte(shadow))
	t.File("etc/nsswitch.conf", 0o644, []byte("passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"))
	t.File("etc/os-release", 0o644, []byte("NAME=\"cri-containerd e2e busybox\"\nID=busybox\nVERSION_ID="+
		strings.TrimPrefix(strings.SplitN(b.src.debs.Files["busybox"], "_", 3)[1], "1%3a")+"\n"))
	return t, nil
}

const passwd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
`

const group = `root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
`

const shadow = `root:*::0:::::
daemon:*::0:::::
bin:*::0:::::
sys:*::0:::::
sync:*::0:::::
mail:*::0:::::
www-data:*::0:::::
operator:*::0:::::
nobody:*::0:::::
`

func (b *builder) base() (v1.Layer, error) {
	if b.busyboxLayer == nil {
		t, err := b.busyboxTree()
		if err != nil {
			return nil, err
		}
		if b.busyboxLayer, err = t.Layer(); err != nil {
			return nil, err
		}
	}
	return b.busyboxLayer, nil
}

// busybox returns the busybox image with extra layers on top.
func (b *builder) busybox(extra []*imagebuild.Tree, cfg v1.Config, variant string) (v1.Image, error) {
	base, err := b.base()
	if err != nil {
		return nil, err
	}
	layers := []v1.Layer{base}
	history := []string{"busybox " + b.src.debs.Files["busybox"] + " + " + b.src.debs.Files["libc6"]}
	for i, t := range extra {
		l, err := t.Layer()
		if err != nil {
			return nil, err
		}
		layers = append(layers, l)
		history = append(history, fmt.Sprintf("%s layer %d", variant, i+1))
	}
	return image(layers, history, cfg, variant, "amd64")
}

func (b *builder) nginx(port int, variant string) (artifact, error) {
	const conf = `user  nginx;
worker_processes  1;
error_log  /var/log/nginx/error.log warn;
pid        /var/run/nginx.pid;
events {
    worker_connections  1024;
}
http {
    include /etc/nginx/conf.d/*.conf;
}
`
	def := fmt.Sprintf(`server {
    listen       %d;
    server_name  localhost;
    location / {
        root   /usr/share/nginx/html;
        index  index.html index.htm;
    }
}
`, port)
	const index = `<!DOCTYPE html>
<html>
<head>
<title>Welcome to nginx!</title>
</head>
<body>
<h1>Welcome to nginx!</h1>
<p>If you see this page, the nginx web server is successfully installed and
working.</p>
</body>
</html>
`
	t := imagebuild.NewTree().
		File("usr/sbin/nginx", 0o755, b.src.binaries["nginx"]).
		File("etc/nginx/nginx.conf", 0o644, []byte(conf)).
		File("etc/nginx/conf.d/default.conf", 0o644, []byte(def)).
		File("usr/share/nginx/html/index.html", 0o644, []byte(index)).
		File("usr/share/nginx/html/50x.html", 0o644, []byte("<html><body><h1>An error occurred.</h1></body></html>\n")).
		Dir("var/log/nginx", 0o755).
		Dir("var/cache/nginx", 0o755).
		Dir("var/run", 0o755)
	return b.busybox([]*imagebuild.Tree{t}, v1.Config{
		Cmd:          []string{"nginx", "-g", "daemon off;"},
		Env:          []string{"PATH=" + defaultPath, "NGINX_VERSION=1.14.2"},
		ExposedPorts: map[string]struct{}{fmt.Sprintf("%d/tcp", port): {}},
		StopSignal:   "SIGTERM",
	}, variant)
}

func (b *builder) httpd() (artifact, error) {
	// sh stays PID 1 with a trap, so SIGTERM stops the container at once
	// (busybox httpd as PID 1 would ignore it).
	const script = `#!/bin/sh
echo "httpd: AH00558: busybox httpd serving /usr/local/apache2/htdocs on port 80"
trap 'kill $pid 2>/dev/null; exit 0' TERM INT
httpd -f -v -p 80 -h /usr/local/apache2/htdocs &
pid=$!
wait $pid
`
	t := imagebuild.NewTree().
		File("usr/local/bin/httpd-foreground", 0o755, []byte(script)).
		File("usr/local/apache2/htdocs/index.html", 0o644, []byte("<html><body><h1>It works!</h1></body></html>\n")).
		Dir("usr/local/apache2/logs", 0o755)
	return b.busybox([]*imagebuild.Tree{t}, v1.Config{
		Cmd:          []string{"httpd-foreground"},
		Env:          []string{"PATH=/usr/local/apache2/bin:" + defaultPath, "HTTPD_PREFIX=/usr/local/apache2", "HTTPD_VERSION=2.4.39"},
		WorkingDir:   "/usr/local/apache2",
		ExposedPorts: map[string]struct{}{"80/tcp": {}},
	}, "httpd")
}

func (b *builder) predefinedGroup() (artifact, error) {
	t := imagebuild.NewTree().
		File("etc/passwd", 0o644, []byte(passwd+"default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n")).
		File("etc/group", 0o644, []byte(group+"default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n")).
		File("etc/shadow", 0o640, []byte(shadow+"default-user:!::0:99999:7:::\n"))
	t.DirOwned("home/default-user", 0o755, 1000, 1000)
	return b.busybox([]*imagebuild.Tree{t}, v1.Config{Cmd: []string{"sh"}, User: "1000"}, "predefined-group")
}

func (b *builder) pause(variant string) (artifact, error) {
	if b.pauseLayer == nil {
		var err error
		if b.pauseLayer, err = imagebuild.NewTree().File("pause", 0o755, b.src.binaries["pause"]).Layer(); err != nil {
			return nil, err
		}
	}
	return image([]v1.Layer{b.pauseLayer}, []string{"pause (Go, static)"}, v1.Config{
		Entrypoint: []string{"/pause"},
		User:       "65535:65535",
		WorkingDir: "/",
	}, variant, "amd64")
}

func (b *builder) layered() (artifact, error) {
	l2 := imagebuild.NewTree().
		File("data/a.txt", 0o644, []byte("a from layer 2\n")).
		File("data/b.txt", 0o644, []byte("b from layer 2\n")).
		File("etc/motd", 0o644, []byte("layered image\n"))
	l3 := imagebuild.NewTree().
		File("data/a.txt", 0o644, []byte("a from layer 3\n")).
		File("data/c.txt", 0o600, []byte("c from layer 3\n")).
		Whiteout("data/b.txt")
	return b.busybox([]*imagebuild.Tree{l2, l3}, v1.Config{Cmd: []string{"sh"}}, "layered")
}

func (b *builder) configImage() (artifact, error) {
	t := imagebuild.NewTree().
		DirOwned("data", 0o755, 33, 33).
		FileOwned("data/seed.txt", 0o644, 33, 33, []byte("seeded from the image\n")).
		Dir("work", 0o755)
	return b.busybox([]*imagebuild.Tree{t}, v1.Config{
		Entrypoint:   []string{"/bin/sh", "-c"},
		Cmd:          []string{`echo "E2E_IMAGE_ENV=$E2E_IMAGE_ENV pwd=$(pwd) uid=$(id -u)"; sleep 3600`},
		Env:          []string{"PATH=" + defaultPath, "E2E_IMAGE_ENV=from-image"},
		WorkingDir:   "/work",
		User:         "www-data",
		Volumes:      map[string]struct{}{"/data": {}},
		ExposedPorts: map[string]struct{}{"8080/tcp": {}},
		StopSignal:   "SIGUSR1",
	}, "config")
}

func (b *builder) multiarch() (artifact, error) {
	amd, err := b.busybox([]*imagebuild.Tree{imagebuild.NewTree().File("ARCH", 0o644, []byte("amd64\n"))}, v1.Config{Cmd: []string{"sh"}}, "multiarch-amd64")
	if err != nil {
		return nil, err
	}
	armLayer, err := imagebuild.NewTree().File("ARCH", 0o644, []byte("arm64\n")).Layer()
	if err != nil {
		return nil, err
	}
	arm, err := image([]v1.Layer{armLayer}, []string{"arch marker"}, v1.Config{Cmd: []string{"cat", "/ARCH"}}, "multiarch-arm64", "arm64")
	if err != nil {
		return nil, err
	}
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	return mutate.AppendManifests(idx,
		mutate.IndexAddendum{Add: amd, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "amd64"}}},
		mutate.IndexAddendum{Add: arm, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}}},
	), nil
}

// sortedRefs returns every upstream reference of the catalog.
func sortedRefs() []string {
	var all []string
	for _, d := range catalog {
		all = append(all, d.refs...)
	}
	sort.Strings(all)
	return all
}
