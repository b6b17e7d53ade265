package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeControl(t *testing.T, ctl Control) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ctl.json")
	b, err := json.Marshal(ctl)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTakeConsumesCount(t *testing.T) {
	p := writeControl(t, Control{"ADD": {Mode: "fail", Count: 2}})
	for i, want := range []bool{true, true, false} {
		r, err := take(p, "ADD")
		if err != nil {
			t.Fatal(err)
		}
		if (r != nil) != want {
			t.Fatalf("call %d: rule %v, want applied=%v", i, r, want)
		}
	}
	if r, _ := take(p, "DEL"); r != nil {
		t.Fatalf("DEL has no rule, got %v", r)
	}
	log, err := os.ReadFile(p + ".log")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(log), "\n"); n != 2 {
		t.Fatalf("log has %d lines, want 2:\n%s", n, log)
	}
}

func TestTakeMissingFile(t *testing.T) {
	r, err := take(filepath.Join(t.TempDir(), "none.json"), "ADD")
	if err != nil || r != nil {
		t.Fatalf("take on a missing file = %v, %v; want nil, nil", r, err)
	}
}

func TestRunModes(t *testing.T) {
	dir := t.TempDir()
	delegate := filepath.Join(dir, "delegate")
	if err := os.WriteFile(delegate, []byte("#!/bin/sh\necho '{\"cniVersion\":\"1.0.0\",\"ok\":true}'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mode     string
		wantCode int
		wantOut  string
	}{
		{"", 0, `"ok":true`},
		{"fail", 1, "injected ADD failure"},
		{"failafter", 1, "failure after the delegate"},
		{"hang", 1, "hang of 0s"},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			ctl := writeControl(t, Control{"ADD": {Mode: tc.mode, Count: 1}})
			conf := `{"cniVersion":"1.0.0","name":"n","type":"cnifault","chaosDelegate":"` + delegate + `","chaosControl":"` + ctl + `"}`
			var out bytes.Buffer
			code := run(strings.NewReader(conf), &out, "ADD")
			if code != tc.wantCode || !strings.Contains(out.String(), tc.wantOut) {
				t.Fatalf("run = %d %q; want %d and %q", code, out.String(), tc.wantCode, tc.wantOut)
			}
		})
	}
}
