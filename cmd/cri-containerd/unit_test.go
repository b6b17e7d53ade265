package main

import (
	"slices"
	"strings"
	"testing"
)

// TestRegressionSystemdUnitStopsWithContainerd pins that the systemd unit
// orders cri-containerd after containerd without binding its life to it: with
// Requires= (or BindsTo=/PartOf=), every containerd restart stopped
// cri-containerd, although the daemon reconnects to containerd by itself.
func TestRegressionSystemdUnitStopsWithContainerd(t *testing.T) {
	unit := unitFile(t, "../../deploy/systemd/cri-containerd.service")["Unit"]
	has := func(key string) bool {
		for _, v := range unit[key] {
			if slices.Contains(strings.Fields(v), "containerd.service") {
				return true
			}
		}
		return false
	}
	for _, key := range []string{"Requires", "BindsTo", "PartOf", "Requisite"} {
		if has(key) {
			t.Errorf("[Unit] %s=containerd.service: a containerd restart stops cri-containerd", key)
		}
	}
	for _, key := range []string{"Wants", "After"} {
		if !has(key) {
			t.Errorf("[Unit] has no %s=containerd.service", key)
		}
	}
}
