package streaming

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// peerCert fetches the certificate the server presents, without verifying it.
func peerCert(t *testing.T, rawURL string) *x509.Certificate {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.Dial("tcp", u.Host, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // fetching the cert to pin
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", u.Host, err)
	}
	defer c.Close()
	if p := c.ConnectionState().NegotiatedProtocol; p != "" && p != "http/1.1" {
		t.Errorf("negotiated %q, want http/1.1 (SPDY/WebSocket upgrades)", p)
	}
	return c.ConnectionState().PeerCertificates[0]
}

// execOverTLS runs an exec through the server's TLS URL with a client that
// trusts only root, and checks the output.
func execOverTLS(t *testing.T, s *Server, root *x509.Certificate) {
	t.Helper()
	ex, err := s.GetExec(&runtimeapi.ExecRequest{ContainerId: "c1", Cmd: []string{"id"}, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(ex.GetUrl(), "https://") {
		t.Fatalf("exec URL %q is not https", ex.GetUrl())
	}
	at, err := s.GetAttach(&runtimeapi.AttachRequest{ContainerId: "c1", Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	pf, err := s.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: "p1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{at.GetUrl(), pf.GetUrl()} {
		if !strings.HasPrefix(u, "https://") {
			t.Errorf("URL %q is not https", u)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	conn, errStream, out := spdyExecTLS(t, ex.GetUrl(), &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	defer conn.Close()
	stdout, _ := io.ReadAll(out)
	_, _ = io.ReadAll(errStream)
	if string(stdout) != "hello from c1 [id]" {
		t.Errorf("stdout over TLS %q", stdout)
	}
}

// TestTLSSelfSigned: with TLS and no key pair, a self-signed certificate for
// the advertised address is generated; the URLs are https, exec works for a
// client that pins that certificate (with host name verification against
// the URL's IP), and a plain HTTP client is refused.
func TestTLSSelfSigned(t *testing.T) {
	s, err := NewServer(Config{Addr: "127.0.0.1", Port: "0", TLS: true}, &fakeRuntime{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	go func() { _ = s.Serve() }()
	if !strings.HasPrefix(s.URL(), "https://127.0.0.1:") {
		t.Fatalf("URL %q", s.URL())
	}
	cert := peerCert(t, s.URL())
	if err := cert.VerifyHostname("127.0.0.1"); err != nil {
		t.Errorf("self-signed certificate: %v", err)
	}
	if time.Until(cert.NotAfter) < 300*24*time.Hour {
		t.Errorf("self-signed certificate expires %v", cert.NotAfter)
	}
	execOverTLS(t, s, cert)

	resp, err := http.Get("http" + strings.TrimPrefix(s.URL(), "https") + "/exec/x")
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the TLS port: %d %s", resp.StatusCode, body)
		}
	}
}

// TestTLSCertFiles: a given key pair is served as is.
func TestTLSCertFiles(t *testing.T) {
	dir := t.TempDir()
	cert, err := selfSignedCert("127.0.0.1", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := NewServer(Config{Addr: "127.0.0.1", Port: "0", TLS: true, TLSCertFile: certFile, TLSKeyFile: keyFile}, &fakeRuntime{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	go func() { _ = s.Serve() }()
	got := peerCert(t, s.URL())
	if !bytes.Equal(got.Raw, cert.Certificate[0]) {
		t.Fatal("the server does not present the configured certificate")
	}
	execOverTLS(t, s, cert.Leaf)

	for name, c := range map[string]Config{
		"cert only":    {TLS: true, TLSCertFile: certFile},
		"missing file": {TLS: true, TLSCertFile: certFile, TLSKeyFile: filepath.Join(dir, "nope.key")},
		"swapped":      {TLS: true, TLSCertFile: keyFile, TLSKeyFile: certFile},
	} {
		c.Addr, c.Port = "127.0.0.1", "0"
		if s, err := NewServer(c, &fakeRuntime{}); err == nil {
			_ = s.Stop()
			t.Errorf("%s: NewServer accepted the TLS configuration", name)
		}
	}
}
