// Package cnitest installs a fake CNI network for tests: a conf dir, a bin
// dir with a small shell-script plugin (and its loopback), and control files
// that make the plugin block or fail. The plugin needs no privileges: it
// touches no namespace, it records an "allocation" per container ID in a
// directory, as host-local does, so tests can count leaked addresses.
package cnitest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Control files; a behaviour is on while its file exists.
const (
	// BlockAdd makes ADD wait (after touching AddBlocked) until it is cleared.
	BlockAdd = "block-add"
	// AddBlocked is created by an ADD that waits on BlockAdd.
	AddBlocked = "add-blocked"
	// FailAddCaps makes ADD fail, after allocating, when capability
	// arguments (runtimeConfig) are present, as portmap does with a
	// container port of 0 after host-local allocated an address.
	FailAddCaps = "fail-add-caps"
	// FailDelCaps makes DEL fail when capability arguments are present.
	FailDelCaps = "fail-del-caps"
	// FailDel makes every DEL fail.
	FailDel = "fail-del"
)

// Network is the name of the network in the installed configuration.
const Network = "fakenet"

// PodIP is the address the plugin hands out.
const PodIP = "10.99.0.5"

const script = `#!/bin/sh
ctl='@CTL@'
in=$(cat)
fail() { printf '{"cniVersion":"1.0.0","code":100,"msg":"%s"}' "$1"; exit 1; }
if [ "$CNI_COMMAND" = VERSION ]; then
  printf '{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}'
  exit 0
fi
if [ "$CNI_IFNAME" = lo ]; then
  [ "$CNI_COMMAND" = ADD ] && printf '{"cniVersion":"0.3.1"}'
  exit 0
fi
caps=no
case "$in" in *'"runtimeConfig"'*) caps=yes;; esac
case "$CNI_COMMAND" in
ADD)
  if [ -e "$ctl/block-add" ]; then
    : > "$ctl/add-blocked"
    while [ -e "$ctl/block-add" ]; do sleep 0.01; done
  fi
  : > "$ctl/ips/$CNI_CONTAINERID"
  if [ $caps = yes ] && [ -e "$ctl/fail-add-caps" ]; then fail "ADD rejects the capability arguments"; fi
  printf '{"cniVersion":"1.0.0","interfaces":[{"name":"%s","sandbox":"%s"}],"ips":[{"address":"@IP@/24","interface":0}]}' "$CNI_IFNAME" "$CNI_NETNS"
  ;;
DEL)
  if [ -e "$ctl/fail-del" ]; then fail "DEL fails"; fi
  if [ $caps = yes ] && [ -e "$ctl/fail-del-caps" ]; then fail "DEL rejects the capability arguments"; fi
  rm -f "$ctl/ips/$CNI_CONTAINERID"
  ;;
esac
exit 0
`

// Plugin is an installed fake network.
type Plugin struct {
	ConfDir string
	BinDir  string
	// Dir holds the control files and ips/, one file per allocated container ID.
	Dir string
}

// Install creates the fake network in temporary directories: a conflist
// named Network whose plugin accepts the portMappings capability.
func Install(t testing.TB) *Plugin {
	t.Helper()
	base := t.TempDir()
	p := &Plugin{
		ConfDir: filepath.Join(base, "net.d"),
		BinDir:  filepath.Join(base, "bin"),
		Dir:     filepath.Join(base, "ctl"),
	}
	for _, d := range []string{p.ConfDir, p.BinDir, filepath.Join(p.Dir, "ips")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	body := strings.NewReplacer("@CTL@", p.Dir, "@IP@", PodIP).Replace(script)
	for _, name := range []string{Network, "loopback"} {
		if err := os.WriteFile(filepath.Join(p.BinDir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	p.WriteConf(t, "10-"+Network+".conflist", Network)
	return p
}

// WriteConf writes a conflist for a network of the fake plugin.
func (p *Plugin) WriteConf(t testing.TB, file, network string) {
	t.Helper()
	conf := `{"cniVersion":"1.0.0","name":"` + network + `","plugins":[{"type":"` + Network + `","capabilities":{"portMappings":true}}]}`
	tmp := filepath.Join(p.ConfDir, "."+file+".tmp")
	if err := os.WriteFile(tmp, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(p.ConfDir, file)); err != nil {
		t.Fatal(err)
	}
}

// Set turns a control file on or off.
func (p *Plugin) Set(t testing.TB, name string, on bool) {
	t.Helper()
	path := filepath.Join(p.Dir, name)
	if on {
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
}

// Exists tells whether a control file exists.
func (p *Plugin) Exists(name string) bool {
	_, err := os.Stat(filepath.Join(p.Dir, name))
	return err == nil
}

// WaitFor waits until the control file name exists (e.g. AddBlocked). It
// fails the test after a generous deadline: this is a hang guard, not a
// speed check.
func (p *Plugin) WaitFor(t testing.TB, name string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !p.Exists(name) {
		if time.Now().After(deadline) {
			t.Fatalf("%s never appeared", name)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Allocations lists the container IDs holding an address.
func (p *Plugin) Allocations(t testing.TB) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(p.Dir, "ips"))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range entries {
		ids = append(ids, e.Name())
	}
	return ids
}
