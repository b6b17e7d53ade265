package streaming

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"

	"k8s.io/klog/v2"
)

// SelfSignedValidity is how long a generated streaming certificate is valid.
// A new one is made at every start.
const SelfSignedValidity = 365 * 24 * time.Hour

// tlsConfig returns the TLS configuration of the server: the key pair in
// cfg.TLSCertFile/cfg.TLSKeyFile, or, when both are empty, a self-signed pair
// generated now for host (the advertised address), the host name and
// loopback, as containerd's enable_tls_streaming does. Only HTTP/1.1 is
// offered: SPDY and WebSocket upgrades need it.
func tlsConfig(cfg Config, host string) (*tls.Config, error) {
	var (
		cert tls.Certificate
		err  error
	)
	switch {
	case cfg.TLSCertFile != "" && cfg.TLSKeyFile != "":
		cert, err = tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, fmt.Errorf("loading the streaming TLS key pair %s, %s: %w", cfg.TLSCertFile, cfg.TLSKeyFile, err)
		}
	case cfg.TLSCertFile != "" || cfg.TLSKeyFile != "":
		return nil, errors.New("the streaming TLS certificate and key must be given together")
	default:
		cert, err = selfSignedCert(host, time.Now())
		if err != nil {
			return nil, fmt.Errorf("generating a self-signed streaming certificate: %w", err)
		}
		klog.InfoS("Generated a self-signed streaming TLS certificate", "sha256", fmt.Sprintf("%x", sha256.Sum256(cert.Certificate[0])),
			"ips", cert.Leaf.IPAddresses, "names", cert.Leaf.DNSNames, "notAfter", cert.Leaf.NotAfter)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"http/1.1"},
	}, nil
}

// selfSignedCert makes an ECDSA P-256 certificate signed by its own key for
// host (an IP or a name), the host name, localhost and the loopback IPs.
func selfSignedCert(host string, now time.Time) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "cri-containerd streaming"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(SelfSignedValidity),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	addHost := func(h string) {
		if h == "" {
			return
		}
		if ip := net.ParseIP(h); ip != nil {
			for _, have := range tmpl.IPAddresses {
				if have.Equal(ip) {
					return
				}
			}
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			return
		}
		for _, have := range tmpl.DNSNames {
			if have == h {
				return
			}
		}
		tmpl.DNSNames = append(tmpl.DNSNames, h)
	}
	addHost(host)
	if hn, err := os.Hostname(); err == nil {
		addHost(hn)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}
