package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
)

// programs are the small static Go programs under cmd/ that go into images.
var programs = []string{"ipcs", "nginx", "nnp", "pause", "pgrep"}

// debPackages are the Debian packages the busybox image is made of.
var debPackages = []string{"busybox", "libc6"}

// sources gives access to the cached inputs: unpacked Debian packages and
// built Go programs. Everything lives under cacheDir so a re-run is fast.
type sources struct {
	cacheDir  string
	moduleDir string // module root (holds go.mod)
	relDir    string // this program's directory relative to moduleDir (slash separated)
	debRoots  map[string]string
	debFiles  map[string]string
	binaries  map[string][]byte
}

func run(dir string, env []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func output(dir string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	return strings.TrimSpace(string(out)), err
}

// latestDeb returns the newest cached .deb of pkg ("" if none). Debian file
// names sort by version well enough for a cache that normally holds one.
func latestDeb(dir, pkg string) string {
	m, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
	if len(m) == 0 {
		return ""
	}
	sort.Strings(m)
	return m[len(m)-1]
}

// prepareDebs downloads (once) and unpacks (once) the Debian packages.
func (s *sources) prepareDebs() error {
	debDir := filepath.Join(s.cacheDir, "debs")
	if err := os.MkdirAll(debDir, 0o755); err != nil {
		return err
	}
	var missing []string
	for _, p := range debPackages {
		if latestDeb(debDir, p) == "" {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		logf("downloading Debian packages %v into %s", missing, debDir)
		args := append([]string{"-q", "download"}, missing...)
		if err := run(debDir, nil, "apt-get", args...); err != nil {
			logf("apt-get download failed, running apt-get update and retrying")
			if err2 := run(debDir, nil, "apt-get", "-q", "update"); err2 != nil {
				return fmt.Errorf("%v; apt-get update: %v", err, err2)
			}
			if err := run(debDir, nil, "apt-get", args...); err != nil {
				return err
			}
		}
	}
	s.debRoots = map[string]string{}
	s.debFiles = map[string]string{}
	for _, p := range debPackages {
		deb := latestDeb(debDir, p)
		if deb == "" {
			return fmt.Errorf("no .deb for %s in %s", p, debDir)
		}
		root := filepath.Join(s.cacheDir, "unpacked", strings.TrimSuffix(filepath.Base(deb), ".deb"))
		if _, err := os.Stat(filepath.Join(root, ".done")); err != nil {
			os.RemoveAll(root)
			if err := os.MkdirAll(root, 0o755); err != nil {
				return err
			}
			if err := run("", nil, "dpkg-deb", "-x", deb, root); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(root, ".done"), nil, 0o644); err != nil {
				return err
			}
		}
		s.debRoots[p] = root
		s.debFiles[p] = filepath.Base(deb)
	}
	return nil
}

// debFile reads a file from an unpacked package.
func (s *sources) debFile(pkg, p string) ([]byte, error) {
	return os.ReadFile(filepath.Join(s.debRoots[pkg], p))
}

// busyboxApplets asks the unpacked busybox for its applet list.
func (s *sources) busyboxApplets() ([]string, error) {
	out, err := output("", filepath.Join(s.debRoots["busybox"], "bin/busybox"), "--list")
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	return strings.Fields(out), nil
}

// prepareBinaries builds the Go programs (CGO_ENABLED=0, linux/amd64,
// -trimpath, no build id: reproducible) unless a binary built from the same
// sources with the same toolchain is cached.
func (s *sources) prepareBinaries() error {
	binDir := filepath.Join(s.cacheDir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return err
	}
	goVersion, err := output(s.moduleDir, "go", "env", "GOVERSION")
	if err != nil {
		return fmt.Errorf("go env GOVERSION: %w", err)
	}
	s.binaries = map[string][]byte{}
	cached := map[string]string{}
	var toBuild []string
	for _, p := range programs {
		h := sha256.New()
		fmt.Fprintf(h, "%s\n%s\n", goVersion, runtime.GOARCH)
		srcDir := filepath.Join(s.moduleDir, filepath.FromSlash(s.relDir), "cmd", p)
		files, _ := filepath.Glob(filepath.Join(srcDir, "*.go"))
		if len(files) == 0 {
			return fmt.Errorf("no Go sources in %s", srcDir)
		}
		sort.Strings(files)
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "%s %d\n", filepath.Base(f), len(b))
			h.Write(b)
		}
		bin := filepath.Join(binDir, p+"-"+hex.EncodeToString(h.Sum(nil))[:16])
		cached[p] = bin
		if _, err := os.Stat(bin); err != nil {
			toBuild = append(toBuild, p)
		}
	}
	if len(toBuild) > 0 {
		tmp, err := os.MkdirTemp("", "e2e-images-build-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		args := []string{"build", "-trimpath", "-ldflags", "-s -w -buildid=", "-o", tmp + "/"}
		for _, p := range toBuild {
			args = append(args, "./"+s.relDir+"/cmd/"+p)
		}
		logf("building %v", toBuild)
		if err := run(s.moduleDir, []string{"CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64"}, "go", args...); err != nil {
			return err
		}
		for _, p := range toBuild {
			// Write then rename, so an interrupted run never leaves a
			// truncated binary behind under the cache key.
			b, err := os.ReadFile(filepath.Join(tmp, p))
			if err != nil {
				return err
			}
			if err := os.WriteFile(cached[p]+".tmp", b, 0o755); err != nil {
				return err
			}
			if err := os.Rename(cached[p]+".tmp", cached[p]); err != nil {
				return err
			}
		}
	}
	for _, p := range programs {
		b, err := os.ReadFile(cached[p])
		if err != nil {
			return err
		}
		s.binaries[p] = b
	}
	return nil
}
