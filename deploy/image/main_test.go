package main

import (
	"archive/tar"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestImageRunsItsTools checks the image `make image` pushed (the digest
// in _output/image.json): in its root file system, the daemon, iptables
// (nf_tables and legacy, as the CNI plugins call them) and the shell run,
// and the default config is there. Needs root (chroot) and the registry.
func TestImageRunsItsTools(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (chroot)")
	}
	b, err := os.ReadFile("../../_output/image.json")
	if err != nil {
		t.Skipf("no image built (make image): %v", err)
	}
	var out struct{ Pinned string }
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(out.Pinned, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := remote.Image(ref)
	if err != nil {
		t.Skipf("image %s not in the registry: %v", ref, err)
	}
	root := t.TempDir()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(root, h.Name)
		switch h.Typeflag {
		case tar.TypeDir:
			err = os.MkdirAll(p, os.FileMode(h.Mode).Perm())
		case tar.TypeSymlink:
			err = os.Symlink(h.Linkname, p)
		case tar.TypeReg:
			var f *os.File
			if f, err = os.OpenFile(p, os.O_CREATE|os.O_WRONLY, os.FileMode(h.Mode).Perm()); err == nil {
				_, err = io.Copy(f, tr)
				_ = f.Close()
			}
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.Config.Entrypoint, " "); got != "/usr/local/bin/cri-containerd" {
		t.Errorf("entrypoint %q", got)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"/usr/local/bin/cri-containerd", "version"}, "cri-containerd"},
		{[]string{"/usr/local/bin/cri-containerd", "--config", "/etc/cri-containerd/config.toml", "config", "dump"}, "socket_path"},
		{[]string{"iptables", "-V"}, "nf_tables"},
		{[]string{"ip6tables", "-V"}, "nf_tables"},
		{[]string{"iptables-legacy", "-V"}, "legacy"},
		{[]string{"iptables-restore", "--version"}, "nf_tables"},
		{[]string{"/bin/sh", "-c", "cp /usr/local/bin/cri-containerd /tmp/x && mv /tmp/x /tmp/y && echo ok"}, "ok"},
		{[]string{"/bin/sh", "-c", "test -s /etc/ssl/certs/ca-certificates.crt && echo ok"}, "ok"},
		// The shim's log writer; without its options it says what it misses.
		{[]string{"/bin/sh", "-c", "/usr/local/bin/cri-containerd-log-writer; echo rc=$?"}, "rc=1"},
	} {
		cmd := exec.Command("chroot", append([]string{root}, tc.args...)...)
		cmd.Env = []string{"PATH=" + strings.TrimPrefix(cfg.Config.Env[0], "PATH=")}
		o, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(o), tc.want) {
			t.Errorf("%v: %v\n%s", tc.args, err, o)
		}
	}
}
