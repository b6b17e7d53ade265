package image

import (
	"encoding/base64"
	"testing"

	"github.com/containerd/errdefs"
)

func TestCredentialsForHost(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	for _, tc := range []struct {
		name       string
		creds      *Credentials
		host       string
		user, pass string
		invalid    bool
	}{
		{name: "nil is anonymous", creds: nil, host: "r.example"},
		{name: "empty is anonymous", creds: &Credentials{}, host: "r.example"},
		{name: "username/password", creds: &Credentials{Username: "u", Password: "p"}, host: "r.example", user: "u", pass: "p"},
		{name: "username wins over auth", creds: &Credentials{Username: "u", Password: "p", Auth: b64("x:y")}, host: "r", user: "u", pass: "p"},
		{name: "identity token", creds: &Credentials{IdentityToken: "tok"}, host: "r", pass: "tok"},
		{name: "identity token wins over auth", creds: &Credentials{IdentityToken: "tok", Auth: b64("x:y")}, host: "r", pass: "tok"},
		{name: "auth base64", creds: &Credentials{Auth: b64("alice:s3:cret")}, host: "r", user: "alice", pass: "s3:cret"},
		{name: "auth base64 unpadded", creds: &Credentials{Auth: "YWxpY2U6eA"}, host: "r", user: "alice", pass: "x"},
		{name: "auth NUL padded", creds: &Credentials{Auth: b64("alice:pw\x00\x00")}, host: "r", user: "alice", pass: "pw"},
		{name: "auth not base64", creds: &Credentials{Auth: "!!!"}, host: "r", invalid: true},
		{name: "auth without colon", creds: &Credentials{Auth: b64("alice")}, host: "r", invalid: true},
		{name: "server address host matches", creds: &Credentials{Username: "u", Password: "p", ServerAddress: "r.example:5000"}, host: "r.example:5000", user: "u", pass: "p"},
		{name: "server address URL matches", creds: &Credentials{Username: "u", Password: "p", ServerAddress: "https://r.example/v2/"}, host: "r.example", user: "u", pass: "p"},
		{name: "server address other host withheld", creds: &Credentials{Username: "u", Password: "p", ServerAddress: "other.example"}, host: "r.example"},
		{name: "server address other port withheld", creds: &Credentials{Username: "u", Password: "p", ServerAddress: "r.example:5001"}, host: "r.example:5000"},
		{name: "docker hub aliases", creds: &Credentials{Username: "u", Password: "p", ServerAddress: "https://index.docker.io/v1/"}, host: "registry-1.docker.io", user: "u", pass: "p"},
		{name: "bad server address", creds: &Credentials{Username: "u", ServerAddress: "http://[::1"}, host: "r", invalid: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user, pass, err := tc.creds.ForHost(tc.host)
			if tc.invalid {
				if !errdefs.IsInvalidArgument(err) {
					t.Fatalf("got %q %q %v, want InvalidArgument", user, pass, err)
				}
				if verr := tc.creds.validate(); !errdefs.IsInvalidArgument(verr) {
					t.Fatalf("validate() = %v, want InvalidArgument", verr)
				}
				return
			}
			if err != nil || user != tc.user || pass != tc.pass {
				t.Fatalf("ForHost(%q) = %q, %q, %v; want %q, %q", tc.host, user, pass, err, tc.user, tc.pass)
			}
			if err := tc.creds.validate(); err != nil {
				t.Fatalf("validate() = %v", err)
			}
		})
	}
}

func TestRegistryToken(t *testing.T) {
	c := &Credentials{RegistryToken: "rt", ServerAddress: "r.example"}
	if got := c.registryToken("r.example"); got != "rt" {
		t.Errorf("matching host: %q", got)
	}
	if got := c.registryToken("other"); got != "" {
		t.Errorf("other host: %q", got)
	}
	var nilCreds *Credentials
	if got := nilCreds.registryToken("r"); got != "" {
		t.Errorf("nil: %q", got)
	}
}

func TestFingerprint(t *testing.T) {
	a := (&Credentials{Username: "u", Password: "p"}).fingerprint()
	b := (&Credentials{Username: "u", Password: "q"}).fingerprint()
	c := (&Credentials{Username: "up"}).fingerprint()
	var n *Credentials
	if a == b || a == c || n.fingerprint() != "" {
		t.Errorf("fingerprints not distinct: %s %s %s", a, b, c)
	}
}
