package image

import (
	"encoding/base64"
	"fmt"
	"net/url"
	"strings"

	"github.com/containerd/errdefs"
)

// dockerHubHosts are the names Docker Hub is known by; credentials given for
// one of them apply to all.
var dockerHubHosts = map[string]bool{
	"docker.io": true, "index.docker.io": true, "registry-1.docker.io": true, "registry.hub.docker.com": true,
}

// serverHost extracts host[:port] from a CRI AuthConfig.ServerAddress, which
// kubelet passes as "host", "host:port" or a URL ("https://host/v1/").
func serverHost(addr string) (string, error) {
	addr = strings.TrimSpace(addr)
	if !strings.Contains(addr, "://") {
		addr = "dummy://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil {
		return "", err
	}
	return u.Host, nil
}

// hostMatches reports whether credentials for server apply to the registry host.
func hostMatches(server, host string) bool {
	if server == host {
		return true
	}
	return dockerHubHosts[server] && dockerHubHosts[host]
}

// appliesTo reports whether c is meant for the registry host: always when no
// ServerAddress is set, otherwise only when it names that host.
func (c *Credentials) appliesTo(host string) (bool, error) {
	if c == nil {
		return false, nil
	}
	if c.ServerAddress == "" {
		return true, nil
	}
	server, err := serverHost(c.ServerAddress)
	if err != nil {
		return false, fmt.Errorf("invalid auth server address %q: %v: %w", c.ServerAddress, err, errdefs.ErrInvalidArgument)
	}
	return hostMatches(server, host), nil
}

// ForHost returns the (username, secret) pair the docker resolver sends to the
// registry host, following containerd's CRI ParseAuth: credentials whose
// ServerAddress names another host are withheld; Username/Password win over
// IdentityToken (returned as secret with an empty user, which makes the
// resolver use it as an OAuth refresh token), which wins over Auth
// (base64 "user:password"). Nil or empty credentials are anonymous.
func (c *Credentials) ForHost(host string) (string, string, error) {
	ok, err := c.appliesTo(host)
	if err != nil || !ok {
		return "", "", err
	}
	switch {
	case c.Username != "":
		return c.Username, c.Password, nil
	case c.IdentityToken != "":
		return "", c.IdentityToken, nil
	case c.Auth != "":
		user, pass, err := decodeAuth(c.Auth)
		if err != nil {
			return "", "", err
		}
		return user, pass, nil
	}
	return "", "", nil
}

// registryToken returns the bearer token to send to host, if any.
func (c *Credentials) registryToken(host string) string {
	if c == nil || c.RegistryToken == "" {
		return ""
	}
	if ok, err := c.appliesTo(host); err != nil || !ok {
		return ""
	}
	return c.RegistryToken
}

// validate checks the credentials without a host, so that a malformed
// AuthConfig is reported as InvalidArgument before any network traffic.
func (c *Credentials) validate() error {
	if c == nil {
		return nil
	}
	if c.ServerAddress != "" {
		if _, err := serverHost(c.ServerAddress); err != nil {
			return fmt.Errorf("invalid auth server address %q: %v: %w", c.ServerAddress, err, errdefs.ErrInvalidArgument)
		}
	}
	if c.Username == "" && c.IdentityToken == "" && c.Auth != "" {
		if _, _, err := decodeAuth(c.Auth); err != nil {
			return err
		}
	}
	return nil
}

// decodeAuth decodes the docker config "auth" field: base64("user:password").
func decodeAuth(auth string) (string, string, error) {
	dec, err := base64.StdEncoding.DecodeString(strings.TrimSpace(auth))
	if err != nil {
		// Some writers drop the padding.
		var err2 error
		dec, err2 = base64.RawStdEncoding.DecodeString(strings.TrimRight(strings.TrimSpace(auth), "="))
		if err2 != nil {
			return "", "", fmt.Errorf("invalid auth: not base64: %v: %w", err, errdefs.ErrInvalidArgument)
		}
	}
	user, pass, ok := strings.Cut(string(dec), ":")
	if !ok {
		return "", "", fmt.Errorf("invalid auth: decoded value is not \"user:password\": %w", errdefs.ErrInvalidArgument)
	}
	return user, strings.Trim(pass, "\x00"), nil
}
