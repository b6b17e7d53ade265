package main

import (
	"bufio"
	"os"
	"strings"
	"testing"
)

// TestRegressionSystemdUnitStopsWithContainerd pins that the systemd unit
// orders cri-containerd after containerd without binding its life to it: with
// Requires= (or BindsTo=/PartOf=), every containerd restart stopped
// cri-containerd, although the daemon reconnects to containerd by itself.
func TestRegressionSystemdUnitStopsWithContainerd(t *testing.T) {
	f, err := os.Open("../../deploy/systemd/cri-containerd.service")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	deps := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		if strings.HasPrefix(line, "[") {
			section = line
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || section != "[Unit]" {
			continue
		}
		deps[strings.TrimSpace(k)] = append(deps[strings.TrimSpace(k)], strings.Fields(v)...)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	has := func(key string) bool {
		for _, u := range deps[key] {
			if u == "containerd.service" {
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
