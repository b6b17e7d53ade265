// Package ctrdconfig writes the configuration of a private containerd for
// the test tooling (the e2e tests and the fault campaign): its own root,
// state, sockets, shim socket dir and opt dir, no metrics listener, no NRI,
// so that it shares nothing with the stack's containerd or the host's.
package ctrdconfig

import (
	"fmt"
	"strings"
)

// Options places a private containerd (config version 4, containerd 2.x).
type Options struct {
	Root, State string
	// Address is the gRPC socket; the ttrpc socket is Address + ".ttrpc".
	Address string
	// DebugAddress is the debug socket ("" for none).
	DebugAddress  string
	ShimSocketDir string
	OptDir        string
	// DisableCRI disables containerd's own CRI plugins (the daemon under
	// test is the CRI).
	DisableCRI bool
	// Extra is TOML appended at the end: tables only (plugin settings,
	// [debug]).
	Extra string
}

// criPlugins are containerd 2.x's built-in CRI plugins.
var criPlugins = []string{
	"io.containerd.grpc.v1.cri",
	"io.containerd.cri.v1.runtime",
	"io.containerd.cri.v1.images",
	"io.containerd.podsandbox.controller.v1.podsandbox",
}

// Config is the config file's text.
func Config(o Options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version = 4\nroot = %q\nstate = %q\nimports = []\n", o.Root, o.State)
	if o.DisableCRI {
		b.WriteString("disabled_plugins = [\n")
		for _, p := range criPlugins {
			fmt.Fprintf(&b, "  %q,\n", p)
		}
		b.WriteString("]\n")
	}
	fmt.Fprintf(&b, `
[plugins]
  [plugins."io.containerd.server.v1.grpc"]
    address = %q
  [plugins."io.containerd.server.v1.ttrpc"]
    address = %q
  [plugins."io.containerd.server.v1.debug"]
    address = %q
  [plugins."io.containerd.server.v1.metrics"]
    address = ""
  [plugins."io.containerd.shim.v1.manager"]
    socket_dir = %q
  [plugins."io.containerd.internal.v1.opt"]
    path = %q
  [plugins."io.containerd.nri.v1.nri"]
    disable = true
`, o.Address, o.Address+".ttrpc", o.DebugAddress, o.ShimSocketDir, o.OptDir)
	if o.Extra != "" {
		b.WriteString(o.Extra)
		if !strings.HasSuffix(o.Extra, "\n") {
			b.WriteString("\n")
		}
	}
	return b.String()
}
