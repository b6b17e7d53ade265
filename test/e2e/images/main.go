// Command images builds the container images that critest v1.37.0 and
// cri-containerd's own e2e tests pull, and pushes them to a local registry.
// No public registry is reachable from the test machines; containerd maps every
// upstream host to the local registry with hosts.toml files (deploy/certs.d.sh),
// so `registry.k8s.io/e2e-test-images/busybox:1.29-2` is served from
// `REGISTRY/e2e-test-images/busybox:1.29-2` and `docker.io/library/busybox:latest`
// from `REGISTRY/library/busybox:latest`.
//
// Every image is built deterministically (sorted tar entries, mtime 0, numeric
// uid/gid 0 unless stated, fixed creation time, reproducible static Go
// binaries), so a rebuild with the same inputs yields the same digests. Inputs
// are cached under --cache-dir: Debian's busybox and libc6 packages (fetched
// with `apt-get download`, unpacked with `dpkg-deb -x`) and the small Go
// programs under cmd/ (built with CGO_ENABLED=0). Tags already holding the
// right digest are not pushed again.
//
// Usage (from the module root):
//
//	go run ./test/e2e/images --registry 127.0.0.1:5000
//	go run ./test/e2e/images --list
//
// It writes a JSON manifest of what it pushed (--manifest, default
// _output/e2e-images.json) and, next to it, <manifest>.changed listing the
// upstream references whose digest differs from the previous manifest (a
// runtime that already holds those must drop them before tests pull again).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

const relDir = "test/e2e/images"

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "e2e-images: "+format+"\n", args...)
}

// manifestEntry is one image of the JSON manifest.
type manifestEntry struct {
	Upstream  []string `json:"upstream"`
	Local     []string `json:"local"`
	Digest    string   `json:"digest"`
	MediaType string   `json:"mediaType"`
	About     string   `json:"about"`
}

type manifest struct {
	Registry string            `json:"registry"`
	Inputs   map[string]string `json:"inputs"`
	Images   []manifestEntry   `json:"images"`
}

// localRef maps an upstream reference to the local registry: the same
// repository path and tag, another host.
func localRef(registry, upstream string) (name.Reference, error) {
	r, err := name.ParseReference(upstream)
	if err != nil {
		return nil, err
	}
	return name.ParseReference(registry+"/"+r.Context().RepositoryStr()+":"+r.Identifier(), name.Insecure, name.StrictValidation)
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside a Go module; run from the cri-containerd checkout")
	}
	return filepath.Dir(gomod), nil
}

func main() {
	defReg := os.Getenv("REGISTRY")
	if defReg == "" {
		defReg = "127.0.0.1:5000"
	}
	registry := flag.String("registry", defReg, "local registry host:port to push to (env REGISTRY)")
	cacheDir := flag.String("cache-dir", "/var/cache/cri-containerd-images", "cache for Debian packages and built programs")
	manifestPath := flag.String("manifest", "", "where to write the JSON manifest (default <module>/_output/e2e-images.json)")
	list := flag.Bool("list", false, "only print the upstream -> local mapping, build nothing")
	force := flag.Bool("force", false, "push even tags that already hold the right digest")
	flag.Parse()

	if *list {
		tw := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', 0)
		for _, d := range catalog {
			for _, r := range d.refs {
				l, err := localRef(*registry, r)
				if err != nil {
					fatal(err)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", r, l, d.about)
			}
		}
		tw.Flush()
		return
	}

	start := time.Now()
	mod, err := moduleRoot()
	if err != nil {
		fatal(err)
	}
	if *manifestPath == "" {
		*manifestPath = filepath.Join(mod, "_output", "e2e-images.json")
	}
	src := &sources{cacheDir: *cacheDir, moduleDir: mod, relDir: relDir}
	if err := src.prepareDebs(); err != nil {
		fatal(err)
	}
	if err := src.prepareBinaries(); err != nil {
		fatal(err)
	}
	b := &builder{src: src}

	ctx := context.Background()
	opts := []remote.Option{remote.WithContext(ctx), remote.WithAuth(authn.Anonymous), remote.WithJobs(4)}
	if err := waitRegistry(*registry, 30*time.Second); err != nil {
		fatal(err)
	}

	m := manifest{Registry: *registry, Inputs: map[string]string{}}
	for p, f := range src.debs.Files {
		m.Inputs["deb:"+p] = f
	}
	toPush := map[name.Reference]remote.Taggable{}
	owner := map[string]string{} // local ref -> digest, to catch two images mapped to one tag
	upToDate := 0
	for _, d := range catalog {
		art, err := d.build(b)
		if err != nil {
			fatal(fmt.Errorf("building %s: %w", d.refs[0], err))
		}
		dig, err := art.Digest()
		if err != nil {
			fatal(err)
		}
		mt, _ := art.MediaType()
		e := manifestEntry{Upstream: d.refs, Digest: dig.String(), MediaType: string(mt), About: d.about}
		for _, r := range d.refs {
			l, err := localRef(*registry, r)
			if err != nil {
				fatal(err)
			}
			e.Local = append(e.Local, l.String())
			if d, ok := owner[l.String()]; ok && d != dig.String() {
				fatal(fmt.Errorf("%s: two different images map to local tag %s", r, l))
			}
			owner[l.String()] = dig.String()
			if !*force {
				if desc, err := remote.Head(l, opts...); err == nil && desc.Digest == dig {
					upToDate++
					continue
				}
			}
			toPush[l] = art
		}
		m.Images = append(m.Images, e)
	}
	if len(toPush) > 0 {
		logf("pushing %d tag(s) to %s (%d already up to date)", len(toPush), *registry, upToDate)
		if err := remote.MultiWrite(toPush, opts...); err != nil {
			fatal(fmt.Errorf("push: %w", err))
		}
	} else {
		logf("all %d tags in %s are up to date", upToDate, *registry)
	}

	changed, err := writeManifest(*manifestPath, m)
	if err != nil {
		fatal(err)
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 8, 2, ' ', 0)
	for _, e := range m.Images {
		for i, r := range e.Upstream {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", r, e.Local[i], e.Digest)
		}
	}
	tw.Flush()
	logf("%d images, %d tags; manifest %s; %d changed since last run; %.1fs",
		len(m.Images), len(sortedRefs()), *manifestPath, len(changed), time.Since(start).Seconds())
}

// writeManifest writes m as JSON and <path>.changed with the upstream refs
// whose digest differs from the manifest found at path before.
func writeManifest(path string, m manifest) ([]string, error) {
	old := map[string]string{}
	if b, err := os.ReadFile(path); err == nil {
		var prev manifest
		if json.Unmarshal(b, &prev) == nil {
			for _, e := range prev.Images {
				for _, r := range e.Upstream {
					old[r] = e.Digest
				}
			}
		}
	}
	var changed []string
	for _, e := range m.Images {
		for _, r := range e.Upstream {
			if d, ok := old[r]; ok && d != e.Digest {
				changed = append(changed, r)
			}
		}
	}
	sort.Strings(changed)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path+".tmp", append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return nil, err
	}
	var c string
	if len(changed) > 0 {
		c = strings.Join(changed, "\n") + "\n"
	}
	return changed, os.WriteFile(path+".changed", []byte(c), 0o644)
}

// waitRegistry waits until GET /v2/ answers.
func waitRegistry(registry string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		resp, err := http.Get("http://" + registry + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
			err = fmt.Errorf("GET /v2/: %s", resp.Status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("registry %s not reachable: %w", registry, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func fatal(err error) {
	logf("error: %v", err)
	os.Exit(1)
}
