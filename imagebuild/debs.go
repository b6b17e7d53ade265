package imagebuild

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Debs are Debian packages downloaded (apt-get download) and unpacked
// (dpkg-deb -x) once into a cache directory.
type Debs struct {
	// Roots maps a package name to the directory it is unpacked in.
	Roots map[string]string
	// Files maps a package name to its .deb file name (name_version_arch.deb).
	Files map[string]string
}

// FetchDebs makes pkgs available under cacheDir (debs/ and unpacked/): a
// package already downloaded or unpacked is not fetched or unpacked again. A
// failed download is retried once after `apt-get update`. logf reports what
// it downloads.
func FetchDebs(cacheDir string, pkgs []string, logf func(format string, args ...any)) (*Debs, error) {
	debDir := filepath.Join(cacheDir, "debs")
	if err := os.MkdirAll(debDir, 0o755); err != nil {
		return nil, err
	}
	var missing []string
	for _, p := range pkgs {
		if latestDeb(debDir, p) == "" {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 {
		logf("downloading Debian packages %v into %s", missing, debDir)
		args := append([]string{"-q", "download"}, missing...)
		if err := run(debDir, "apt-get", args...); err != nil {
			logf("apt-get download failed, running apt-get update and retrying")
			if err2 := run(debDir, "apt-get", "-q", "update"); err2 != nil {
				return nil, fmt.Errorf("%w; apt-get update: %w", err, err2)
			}
			if err := run(debDir, "apt-get", args...); err != nil {
				return nil, err
			}
		}
	}
	d := &Debs{Roots: map[string]string{}, Files: map[string]string{}}
	for _, p := range pkgs {
		deb := latestDeb(debDir, p)
		if deb == "" {
			return nil, fmt.Errorf("no .deb for %s in %s", p, debDir)
		}
		root := filepath.Join(cacheDir, "unpacked", strings.TrimSuffix(filepath.Base(deb), ".deb"))
		// The marker sits beside the tree, not in it: callers copy whole trees.
		if _, err := os.Stat(root + ".done"); err != nil {
			_ = os.RemoveAll(root)
			if err := os.MkdirAll(root, 0o755); err != nil {
				return nil, err
			}
			if err := run("", "dpkg-deb", "-x", deb, root); err != nil {
				return nil, err
			}
			if err := os.WriteFile(root+".done", nil, 0o644); err != nil {
				return nil, err
			}
		}
		d.Roots[p] = root
		d.Files[p] = filepath.Base(deb)
	}
	return d, nil
}

// ReadFile reads file p of unpacked package pkg.
func (d *Debs) ReadFile(pkg, p string) ([]byte, error) {
	return os.ReadFile(filepath.Join(d.Roots[pkg], p))
}

// BusyboxApplets asks the unpacked busybox package for its applet list.
func (d *Debs) BusyboxApplets() ([]string, error) {
	out, err := exec.Command(filepath.Join(d.Roots["busybox"], "bin/busybox"), "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	return strings.Fields(string(out)), nil
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

func run(dir, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}
