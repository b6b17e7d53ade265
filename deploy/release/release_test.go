// Package release_test checks the release tarball hack/release.sh makes.
package release_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cri-containerd/cri-containerd/config"
)

// release runs hack/release.sh with bin into a fresh directory and returns
// the tarball's path.
func release(t *testing.T, bin string) string {
	t.Helper()
	out := t.TempDir()
	cmd := exec.Command("bash", "hack/release.sh", "--binary", bin, "--out", out)
	cmd.Dir = "../.."
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("hack/release.sh: %v\n%s", err, b)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// TestReleaseTarball: the tarball holds exactly the binary, the systemd
// units, the default config, the CNI example, the DaemonSet manifests and
// the install doc, owned by root with mtime 0, with SHA256SUMS covering
// every other file and a .sha256 of the tarball next to it; two runs give
// the same bytes.
func TestReleaseTarball(t *testing.T) {
	for _, tool := range []string{"bash", "tar", "gzip", "sha256sum", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	bin := filepath.Join(t.TempDir(), "cri-containerd")
	build := exec.Command("go", "build", "-o", bin, "./cmd/cri-containerd")
	build.Dir = "../.."
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	// The log writer next to it, where hack/release.sh looks by default.
	build = exec.Command("go", "build", "-o", filepath.Join(filepath.Dir(bin), "cri-containerd-log-writer"), "./cmd/cri-containerd-log-writer")
	build.Dir = "../.."
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	tarball := release(t, bin)
	if !strings.HasPrefix(filepath.Base(tarball), "cri-containerd-v") || !strings.HasSuffix(tarball, ".linux-amd64.tar.gz") {
		t.Errorf("tarball name %s", filepath.Base(tarball))
	}
	raw, err := os.ReadFile(tarball)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	side, err := os.ReadFile(tarball + ".sha256")
	if err != nil {
		t.Fatal(err)
	}
	if want := hex.EncodeToString(sum[:]) + "  " + filepath.Base(tarball) + "\n"; string(side) != want {
		t.Errorf(".sha256 = %q, want %q", side, want)
	}
	again, err := os.ReadFile(release(t, bin))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(raw, again) {
		t.Error("two runs with the same inputs made different tarballs")
	}

	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := map[string][]byte{}
	modes := map[string]int64{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || h.ModTime.Unix() != 0 {
			t.Errorf("%s: uid %d gid %d mtime %v, want 0 0 0", h.Name, h.Uid, h.Gid, h.ModTime)
		}
		if strings.HasPrefix(h.Name, "/") || strings.Contains(h.Name, "..") {
			t.Errorf("unsafe name %q", h.Name)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		files[h.Name], modes[h.Name] = b, h.Mode
	}

	want := map[string]int64{
		"usr/local/bin/cri-containerd":              0o755,
		"usr/local/bin/cri-containerd-log-writer":   0o755,
		"etc/systemd/system/cri-containerd.service": 0o644,
		"etc/systemd/system/cri-containerd.socket":  0o644,
		"etc/cri-containerd/config.toml":            0o644,
		"etc/cni/net.d/10-cri-containerd.conflist":  0o644,
		"opt/cri-containerd/INSTALL.md":             0o644,
		"opt/cri-containerd/SHA256SUMS":             0o644,
	}
	manifests, _ := filepath.Glob("../kubernetes/*.yaml")
	manifests = append(manifests, "../kubernetes/README.md")
	if len(manifests) < 5 {
		t.Fatalf("manifests: %v", manifests)
	}
	same := map[string]string{
		"etc/systemd/system/cri-containerd.service": "../systemd/cri-containerd.service",
		"etc/systemd/system/cri-containerd.socket":  "../systemd/cri-containerd.socket",
		"etc/cni/net.d/10-cri-containerd.conflist":  "10-cri-containerd.conflist",
		"opt/cri-containerd/INSTALL.md":             "INSTALL.md",
	}
	for _, m := range manifests {
		p := "opt/cri-containerd/deploy/kubernetes/" + filepath.Base(m)
		want[p] = 0o644
		same[p] = m
	}
	var got, exp []string
	for n := range files {
		got = append(got, n)
	}
	for n := range want {
		exp = append(exp, n)
	}
	sort.Strings(got)
	sort.Strings(exp)
	if strings.Join(got, "\n") != strings.Join(exp, "\n") {
		t.Errorf("files:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(exp, "\n"))
	}
	for n, m := range want {
		if files[n] != nil && modes[n] != m {
			t.Errorf("%s: mode %o, want %o", n, modes[n], m)
		}
	}
	for n, src := range same {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(files[n], b) {
			t.Errorf("%s differs from %s", n, src)
		}
	}
	if b, _ := os.ReadFile(bin); !bytes.Equal(files["usr/local/bin/cri-containerd"], b) {
		t.Error("the binary in the tarball is not the one given")
	}

	// SHA256SUMS: every other file, with its right sum.
	sums := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(files["opt/cri-containerd/SHA256SUMS"])), "\n") {
		h, n, ok := strings.Cut(line, "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q", line)
		}
		sums[n] = h
	}
	for n, b := range files {
		if n == "opt/cri-containerd/SHA256SUMS" {
			continue
		}
		s := sha256.Sum256(b)
		if sums[n] != hex.EncodeToString(s[:]) {
			t.Errorf("SHA256SUMS %s = %q, want %x", n, sums[n], s)
		}
		delete(sums, n)
	}
	if len(sums) > 0 {
		t.Errorf("SHA256SUMS lists files not in the tarball: %v", sums)
	}

	// The default config is the daemon's and loads; the CNI example is a conflist.
	cfgPath := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(cfgPath, files["etc/cri-containerd/config.toml"], 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	if err := config.LoadFile(cfgPath, &cfg, false); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var conflist struct {
		CNIVersion string `json:"cniVersion"`
		Name       string
		Plugins    []struct{ Type string }
	}
	if err := json.Unmarshal(files["etc/cni/net.d/10-cri-containerd.conflist"], &conflist); err != nil {
		t.Fatal(err)
	}
	if conflist.Name == "" || len(conflist.Plugins) == 0 || conflist.Plugins[0].Type != "bridge" {
		t.Errorf("CNI example = %+v", conflist)
	}
}
