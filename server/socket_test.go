package server

import (
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestSocketGroup: the CRI socket is mode 0660 and, with --socket-group,
// owned by that group (a name or a numeric gid); an unknown group is an
// error and leaves no socket behind.
func TestSocketGroup(t *testing.T) {
	other := "" // a group the daemon's user is not in by default
	if g, err := user.LookupGroup("nogroup"); err == nil && os.Geteuid() == 0 {
		other = g.Gid
	}
	for _, tc := range []struct {
		name    string
		group   string
		wantGID func() int // nil: the process's egid
		wantErr string
	}{
		{name: "default", group: ""},
		{name: "numeric own gid", group: strconv.Itoa(os.Getegid())},
		{name: "name", group: "nogroup", wantGID: func() int { n, _ := strconv.Atoi(other); return n }},
		{name: "numeric", group: other, wantGID: func() int { n, _ := strconv.Atoi(other); return n }},
		{name: "unknown", group: "no-such-group-cri", wantErr: `unknown group "no-such-group-cri"`},
		{name: "invalid gid", group: "4294967295", wantErr: "invalid gid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.wantGID != nil && other == "" {
				t.Skip("needs root and a nogroup group")
			}
			path := filepath.Join(t.TempDir(), "run", "cri.sock")
			l, err := listenUnix(path, tc.group)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("listenUnix(%q): %v, want an error with %q", tc.group, err, tc.wantErr)
				}
				if _, err := os.Lstat(path); !os.IsNotExist(err) {
					t.Fatalf("socket left behind after a failure: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
				t.Errorf("socket mode %v, want a socket with 0660", fi.Mode())
			}
			gid := int(fi.Sys().(*syscall.Stat_t).Gid)
			want := os.Getegid()
			if tc.wantGID != nil {
				want = tc.wantGID()
			}
			if gid != want {
				t.Errorf("socket group %d, want %d", gid, want)
			}
		})
	}
}

// TestListenUnixStaleAndBusy: a stale socket is replaced, a live one is not.
func TestListenUnixStaleAndBusy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cri.sock")
	l, err := listenUnix(path, "")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := listenUnix(path, ""); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second listener on a live socket: %v", err)
	}
	ul := l.(interface{ SetUnlinkOnClose(bool) })
	ul.SetUnlinkOnClose(false)
	_ = l.Close()
	l2, err := listenUnix(path, "")
	if err != nil {
		t.Fatalf("stale socket not replaced: %v", err)
	}
	_ = l2.Close()
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := listenUnix(path, ""); err == nil {
		t.Fatal("a regular file at the socket path was replaced")
	}
}
