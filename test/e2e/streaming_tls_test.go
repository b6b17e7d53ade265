package e2e

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/test/e2e/framework"
)

// streamServerCert returns the certificate the streaming server of rawURL
// presents.
func streamServerCert(t *testing.T, rawURL string) *x509.Certificate {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", u.Host, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // inspecting the cert
	if err != nil {
		t.Fatalf("TLS handshake with the streaming server %s: %v", u.Host, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

// TestStreamingTLS runs exec (SPDY and WebSocket), attach and port-forward
// over the TLS streaming server of a daemon started with
// --enable-tls-streaming (a self-signed pair generated at start), and an exec
// against a daemon given its own key pair.
func TestStreamingTLS(t *testing.T) {
	e := newCtrEnv(t, "--enable-tls-streaming")
	rc := e.rc()
	podID, podCfg := e.runPod("tls-stream")
	httpd := framework.NewContainerConfig("httpd", framework.BusyboxImageRef,
		ctrSh("mkdir -p /www && echo tls-pf-ok > /www/index.html && exec httpd -f -p 8080 -h /www")...)
	hid := e.run(podID, podCfg, httpd)
	shCfg := framework.NewContainerConfig("sh-stdin", framework.BusyboxImageRef, "sh")
	shCfg.Stdin = true
	shID := e.run(podID, podCfg, shCfg)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	t.Run("exec", func(t *testing.T) {
		u := streamExecURL(t, rc, &runtimeapi.ExecRequest{ContainerId: hid, Cmd: []string{"sh", "-c", "echo tls-out; echo tls-err >&2; exit 3"}, Stdout: true, Stderr: true})
		if !strings.HasPrefix(u, "https://") {
			t.Fatalf("exec URL %q is not https", u)
		}
		if cert := streamServerCert(t, u); cert.NotAfter.Before(time.Now()) {
			t.Errorf("self-signed streaming certificate expired: %v", cert.NotAfter)
		}
		var out, errOut streamBuffer
		err := framework.StreamSPDY(ctx, u, framework.StreamOptions{Stdout: &out, Stderr: &errOut})
		if code, ok := streamExitCode(err); !ok || code != 3 {
			t.Errorf("exec over TLS: %v, want exit code 3", err)
		}
		if out.String() != "tls-out\n" || errOut.String() != "tls-err\n" {
			t.Errorf("exec over TLS: stdout %q stderr %q", out.String(), errOut.String())
		}
		// Plain HTTP to the TLS port gets nothing done.
		plain := "http" + strings.TrimPrefix(u, "https")
		if resp, err := http.Post(plain, "text/plain", nil); err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode < 400 {
				t.Errorf("plain HTTP to the TLS streaming port: %d", resp.StatusCode)
			}
		}
	})
	t.Run("exec-websocket", func(t *testing.T) {
		u := streamExecURL(t, rc, &runtimeapi.ExecRequest{ContainerId: hid, Cmd: []string{"echo", "ws-tls"}, Stdout: true})
		var out streamBuffer
		if err := framework.StreamWebSocket(ctx, u, framework.StreamOptions{Stdout: &out}, "v5.channel.k8s.io", "v4.channel.k8s.io"); err != nil {
			t.Fatalf("websocket exec over TLS: %v", err)
		}
		if out.String() != "ws-tls\n" {
			t.Errorf("websocket exec over TLS: stdout %q", out.String())
		}
	})
	t.Run("attach", func(t *testing.T) {
		framework.WaitForContainerState(t, rc, shID, runtimeapi.ContainerState_CONTAINER_RUNNING, 10*time.Second)
		if u := streamAttachURL(t, rc, &runtimeapi.AttachRequest{ContainerId: shID, Stdout: true}); !strings.HasPrefix(u, "https://") {
			t.Fatalf("attach URL %q is not https", u)
		}
		s := streamStartAttach(t, rc, shID, false)
		s.send(t, "echo attached-tls-$((40+2))\n")
		streamWaitOutput(t, s.out, "attached-tls-42\n", 30*time.Second)
		s.detach()
		_ = s.wait(t, 30*time.Second)
	})
	t.Run("port-forward", func(t *testing.T) {
		ctrWaitFor(t, 30*time.Second, "httpd in the pod", func() bool {
			out, _, code := framework.ExecSyncOrFail(t, rc, hid, 10*time.Second, "wget", "-q", "-O-", "http://127.0.0.1:8080/")
			return code == 0 && out == "tls-pf-ok\n"
		})
		resp, err := rc.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: podID, Port: []int32{8080}})
		if err != nil {
			t.Fatalf("PortForward: %v", err)
		}
		if !strings.HasPrefix(resp.GetUrl(), "https://") {
			t.Fatalf("port-forward URL %q is not https", resp.GetUrl())
		}
		pf := framework.StartPortForward(t, resp.GetUrl(), 8080, nil, nil)
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
		r, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/", pf.LocalPort))
		if err != nil {
			t.Fatalf("GET through the TLS port forward: %v", err)
		}
		body, _ := io.ReadAll(r.Body)
		_ = r.Body.Close()
		if r.StatusCode != 200 || string(body) != "tls-pf-ok\n" {
			t.Errorf("GET through the TLS port forward: %d %q", r.StatusCode, body)
		}
		_ = pf.Stop()
	})

	t.Run("given-key-pair", func(t *testing.T) {
		certFile, keyFile, certDER := writeTestKeyPair(t)
		e2 := newCtrEnv(t, "--stream-tls-cert", certFile, "--stream-tls-key", keyFile)
		rc2 := e2.rc()
		podID2, podCfg2 := e2.runPod("tls-stream-cert")
		id := e2.run(podID2, podCfg2, framework.NewContainerConfig("main", framework.BusyboxImageRef, "sleep", "3600"))
		u := streamExecURL(t, rc2, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"echo", "given-cert"}, Stdout: true})
		if !strings.HasPrefix(u, "https://") {
			t.Fatalf("exec URL %q is not https", u)
		}
		if got := streamServerCert(t, u); !bytes.Equal(got.Raw, certDER) {
			t.Fatal("the streaming server does not present the given certificate")
		}
		var out streamBuffer
		if err := framework.StreamSPDY(ctx, u, framework.StreamOptions{Stdout: &out}); err != nil {
			t.Fatalf("exec with the given key pair: %v", err)
		}
		if out.String() != "given-cert\n" {
			t.Errorf("stdout %q", out.String())
		}
	})
}

// writeTestKeyPair writes a self-signed certificate for loopback and its key
// as PEM files.
func writeTestKeyPair(t *testing.T) (certFile, keyFile string, certDER []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(42),
		Subject:      pkix.Name{CommonName: "e2e streaming"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	certDER, err = x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "stream.crt"), filepath.Join(dir, "stream.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, certDER
}
