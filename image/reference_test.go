package image

import (
	"reflect"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
)

func TestNormalizeRef(t *testing.T) {
	const d = "sha256:9700f9a2f5bf2c45f2f605a0bd3bce7cf37420ec9d3ed50ac2758413308766bf"
	for _, tc := range []struct {
		in, want string
		invalid  bool
	}{
		{in: "busybox", want: "docker.io/library/busybox:latest"},
		{in: "busybox:1.36", want: "docker.io/library/busybox:1.36"},
		{in: "library/busybox", want: "docker.io/library/busybox:latest"},
		{in: "docker.io/busybox", want: "docker.io/library/busybox:latest"},
		{in: "user/app:v1", want: "docker.io/user/app:v1"},
		{in: "registry.k8s.io/pause:3.10", want: "registry.k8s.io/pause:3.10"},
		{in: "localhost:5000/x", want: "localhost:5000/x:latest"},
		{in: "127.0.0.1:5000/a/b:c", want: "127.0.0.1:5000/a/b:c"},
		{in: "busybox@" + d, want: "docker.io/library/busybox@" + d},
		{in: "busybox:1.36@" + d, want: "docker.io/library/busybox@" + d},
		{in: "", invalid: true},
		{in: "   ", invalid: true},
		{in: "Busybox", invalid: true},
		{in: "busybox:", invalid: true},
		{in: "busybox@sha256:abc", invalid: true},
		{in: "a/../b", invalid: true},
		{in: "9700f9a2f5bf2c45f2f605a0bd3bce7cf37420ec9d3ed50ac2758413308766bf", invalid: true},
	} {
		t.Run(tc.in, func(t *testing.T) {
			n, err := NormalizeRef(tc.in)
			if tc.invalid {
				if !errdefs.IsInvalidArgument(err) {
					t.Fatalf("NormalizeRef(%q) = %v, %v; want InvalidArgument", tc.in, n, err)
				}
				return
			}
			if err != nil || n.String() != tc.want {
				t.Fatalf("NormalizeRef(%q) = %v, %v; want %q", tc.in, n, err, tc.want)
			}
		})
	}
}

func TestRepoDigestAndTag(t *testing.T) {
	const m = digest.Digest("sha256:1111111111111111111111111111111111111111111111111111111111111111")
	const d = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	for _, tc := range []struct{ ref, digest, tag string }{
		{"busybox", "docker.io/library/busybox@" + string(m), "docker.io/library/busybox:latest"},
		{"registry.k8s.io/pause:3.10", "registry.k8s.io/pause@" + string(m), "registry.k8s.io/pause:3.10"},
		{"registry.k8s.io/pause@" + d, "registry.k8s.io/pause@" + d, ""},
	} {
		n, err := NormalizeRef(tc.ref)
		if err != nil {
			t.Fatal(err)
		}
		gotD, gotT := repoDigestAndTag(n, m)
		if gotD != tc.digest || gotT != tc.tag {
			t.Errorf("%s: got (%q, %q), want (%q, %q)", tc.ref, gotD, gotT, tc.digest, tc.tag)
		}
	}
}

func TestSplitReferences(t *testing.T) {
	const id = "sha256:3333333333333333333333333333333333333333333333333333333333333333"
	const d = "sha256:4444444444444444444444444444444444444444444444444444444444444444"
	tags, digests := splitReferences([]string{
		id,
		"registry.k8s.io/pause:3.9",
		"k8s.gcr.io/pause:3.9",
		"registry.k8s.io/pause@" + d,
		"not a reference",
	})
	if want := []string{"k8s.gcr.io/pause:3.9", "registry.k8s.io/pause:3.9"}; !reflect.DeepEqual(tags, want) {
		t.Errorf("tags = %v, want %v", tags, want)
	}
	if want := []string{"registry.k8s.io/pause@" + d}; !reflect.DeepEqual(digests, want) {
		t.Errorf("digests = %v, want %v", digests, want)
	}
}

func TestIDPrefix(t *testing.T) {
	for _, tc := range []struct {
		in   string
		hex  string
		isID bool
	}{
		{"sha256:abc", "abc", true},
		{"abcdef012345", "abcdef012345", true},
		{"abcdef01234", "", false}, // shorter than a short ID
		{"abcdef01234g", "", false},
		{"busybox", "", false},
		{"sha256:", "", false},
		{"ABCDEF012345", "", false},
	} {
		hex, ok := idPrefix(tc.in)
		if ok != tc.isID || hex != tc.hex {
			t.Errorf("idPrefix(%q) = %q, %v; want %q, %v", tc.in, hex, ok, tc.hex, tc.isID)
		}
	}
}

func TestUserFromConfig(t *testing.T) {
	i64 := func(v int64) *int64 { return &v }
	for _, tc := range []struct {
		user string
		uid  *int64
		name string
	}{
		{"", nil, ""},
		{"1002", i64(1002), ""},
		{"0", i64(0), ""},
		{"1003:1004", i64(1003), ""},
		{"www-data", nil, "www-data"},
		{"www-data:1004", nil, "www-data"},
		{"www-data:staff", nil, "www-data"},
	} {
		uid, name := UserFromConfig(tc.user)
		if name != tc.name || (uid == nil) != (tc.uid == nil) || (uid != nil && *uid != *tc.uid) {
			t.Errorf("UserFromConfig(%q) = %v, %q; want %v, %q", tc.user, uid, name, tc.uid, tc.name)
		}
	}
}
