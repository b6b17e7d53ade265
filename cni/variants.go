package cni

import (
	"encoding/json"
	"fmt"
	"sync"

	gocni "github.com/containerd/go-cni"
)

// Plugins a pod does not need are not run. Each CNI plugin run is a
// process (20-30 ms of CPU on a small node), and a network chain of bridge,
// portmap and bandwidth runs all three for every pod at ADD and at DEL,
// one after the other, although most pods have neither host ports nor
// bandwidth limits. Only plugins whose run is then a no-op by their own code
// are left out, so the pod's network is the same:
//
//   - portmap, when the pod has no port mappings: its ADD returns the
//     previous result and its DEL returns at once when its runtimeConfig
//     has no port mappings (containernetworking/plugins, meta/portmap).
//   - bandwidth at ADD, when the pod has no bandwidth annotations and the
//     plugin's configuration sets no static rate: its ADD then returns the
//     previous result. Its DEL always runs (it removes an ifb device by
//     container ID, which a configuration changed since the ADD may have
//     made).
//
// A plugin is left out only as a chained plugin (not the first of a list).
// The chains without them are go-cni instances of their own, built from the
// loaded configuration's lists the first time a pod needs one.

// Plugin types that may be left out.
const (
	pluginPortmap   = "portmap"
	pluginBandwidth = "bandwidth"
)

// skipSet is the set of plugin types left out of a run, as bits.
type skipSet uint8

const (
	skipPortmap skipSet = 1 << iota
	skipBandwidth
)

// skipFor is what a run of op ("add" or "del") with args may leave out.
func skipFor(args PodArgs, add bool) skipSet {
	var s skipSet
	if _, ok := args.Capabilities[capPortMappings]; !ok {
		s |= skipPortmap
	}
	if _, ok := args.Capabilities[capBandwidth]; !ok && add {
		s |= skipBandwidth
	}
	return s
}

// variants are the go-cni instances of one loaded configuration without
// some plugins, by skipSet; built on first use.
type variants struct {
	mu   sync.Mutex
	byID map[skipSet]gocni.CNI
	// lo is go-cni's lo network alone (loopbackOnly).
	lo gocni.CNI
}

// loopbackOnly returns an instance with go-cni's lo network alone, for the
// DEL of pods whose lo the loopback plugin set up.
func (c *netConfig) loopbackOnly() (gocni.CNI, error) {
	c.variants.mu.Lock()
	defer c.variants.mu.Unlock()
	if c.variants.lo != nil {
		return c.variants.lo, nil
	}
	if c.newCNI == nil {
		return nil, errNoConfig
	}
	p, err := c.newCNI()
	if err != nil {
		return nil, err
	}
	if err := p.Load(gocni.WithLoNetwork); err != nil {
		return nil, fmt.Errorf("loading the loopback network: %w", err)
	}
	c.variants.lo = p
	return p, nil
}

// variant returns the instance of base without the plugins of s that its
// configuration allows to leave out (base itself when none is).
func (c *netConfig) variant(s skipSet) (gocni.CNI, error) {
	if s == 0 || c.newCNI == nil {
		return c.plugin, nil
	}
	c.variants.mu.Lock()
	defer c.variants.mu.Unlock()
	if p, ok := c.variants.byID[s]; ok {
		return p, nil
	}
	lists, pruned, err := prunedLists(c.plugin.GetConfig(), s)
	if err != nil {
		return nil, err
	}
	p := c.plugin
	if pruned {
		if p, err = c.newCNI(); err != nil {
			return nil, err
		}
		opts := append([]gocni.Opt(nil), c.loadOpts...)
		for _, l := range lists {
			opts = append(opts, gocni.WithConfListBytes(l))
		}
		if err := p.Load(opts...); err != nil {
			return nil, fmt.Errorf("loading CNI configuration without %v: %w", s, err)
		}
	}
	if c.variants.byID == nil {
		c.variants.byID = map[skipSet]gocni.CNI{}
	}
	c.variants.byID[s] = p
	return p, nil
}

// String names the plugin types of s.
func (s skipSet) String() string {
	var out []string
	if s&skipPortmap != 0 {
		out = append(out, pluginPortmap)
	}
	if s&skipBandwidth != 0 {
		out = append(out, pluginBandwidth)
	}
	return fmt.Sprint(out)
}

// prunedLists returns the network lists of cfg (in order) without the
// chained plugins of s that may be left out, and whether any was.
func prunedLists(cfg *gocni.ConfigResult, s skipSet) ([][]byte, bool, error) {
	var lists [][]byte
	pruned := false
	for _, n := range cfg.Networks {
		if n.IFName == "lo" {
			continue // go-cni's own lo network (WithLoNetwork), loaded as such
		}
		src := []byte(n.Config.Source)
		var keep []json.RawMessage
		changed := false
		for i, p := range n.Config.Plugins {
			if i > 0 && leaveOut(p, s) {
				changed = true
				continue
			}
			keep = append(keep, json.RawMessage(p.Source))
		}
		if changed {
			var list map[string]json.RawMessage
			if err := json.Unmarshal(src, &list); err != nil {
				return nil, false, fmt.Errorf("parsing CNI network list %q: %w", n.Config.Name, err)
			}
			raw, err := json.Marshal(keep)
			if err != nil {
				return nil, false, err
			}
			list["plugins"] = raw
			if src, err = json.Marshal(list); err != nil {
				return nil, false, err
			}
			pruned = true
		}
		lists = append(lists, src)
	}
	return lists, pruned, nil
}

// leaveOut reports whether plugin p may be left out of a run skipping s.
func leaveOut(p *gocni.NetworkConf, s skipSet) bool {
	if p.Network == nil {
		return false
	}
	switch p.Network.Type {
	case pluginPortmap:
		return s&skipPortmap != 0
	case pluginBandwidth:
		return s&skipBandwidth != 0 && !staticBandwidth([]byte(p.Source))
	}
	return false
}

// staticBandwidth reports whether a bandwidth plugin configuration sets a
// rate of its own (then its ADD shapes every pod) or cannot be read.
func staticBandwidth(conf []byte) bool {
	var c struct {
		IngressRate  uint64 `json:"ingressRate"`
		IngressBurst uint64 `json:"ingressBurst"`
		EgressRate   uint64 `json:"egressRate"`
		EgressBurst  uint64 `json:"egressBurst"`
	}
	if err := json.Unmarshal(conf, &c); err != nil {
		return true
	}
	return c.IngressRate != 0 || c.IngressBurst != 0 || c.EgressRate != 0 || c.EgressBurst != 0
}
