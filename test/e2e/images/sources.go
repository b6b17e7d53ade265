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

	"github.com/cri-containerd/cri-containerd/imagebuild"
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
	debs      *imagebuild.Debs
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

// prepareDebs downloads (once) and unpacks (once) the Debian packages.
func (s *sources) prepareDebs() (err error) {
	s.debs, err = imagebuild.FetchDebs(s.cacheDir, debPackages, logf)
	return err
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
