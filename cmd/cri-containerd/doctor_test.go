package main

import (
	"flag"
	"io"
	"slices"
	"testing"
)

func TestSplitDoctorArgs(t *testing.T) {
	for _, tc := range []struct {
		args           []string
		daemon, doctor []string
		wantErr        bool
	}{
		{args: []string{"--config", "x.toml", "--repair", "--root-dir=/r", "--json", "--grace", "0s", "--state-dir", "/s"},
			daemon: []string{"--config", "x.toml", "--root-dir=/r", "--state-dir", "/s"},
			doctor: []string{"--repair", "--json", "--grace", "0s"}},
		{args: []string{"-containerd-namespace", "ns", "--enable-tls-streaming", "--repair=false"},
			daemon: []string{"-containerd-namespace", "ns", "--enable-tls-streaming"},
			doctor: []string{"--repair=false"}},
		{args: []string{"--no-such-flag"}, wantErr: true},
		{args: []string{"--root-dir"}, wantErr: true},
	} {
		dfs := flag.NewFlagSet("doctor", flag.ContinueOnError)
		dfs.SetOutput(io.Discard)
		dfs.Bool("repair", false, "")
		dfs.Bool("json", false, "")
		dfs.Duration("grace", 0, "")
		daemon, doctor, err := splitDoctorArgs(dfs, tc.args)
		if (err != nil) != tc.wantErr {
			t.Errorf("%v: err %v, want error %v", tc.args, err, tc.wantErr)
			continue
		}
		if !tc.wantErr && (!slices.Equal(daemon, tc.daemon) || !slices.Equal(doctor, tc.doctor)) {
			t.Errorf("%v: daemon %v doctor %v, want %v %v", tc.args, daemon, doctor, tc.daemon, tc.doctor)
		}
	}
}
