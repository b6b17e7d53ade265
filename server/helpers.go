package server

import (
	"fmt"
	"net"
	"strings"
)

// validateCIDRs checks a comma-separated list of CIDRs.
func validateCIDRs(s string) error {
	for _, c := range strings.Split(s, ",") {
		if _, _, err := net.ParseCIDR(strings.TrimSpace(c)); err != nil {
			return fmt.Errorf("invalid CIDR %q", c)
		}
	}
	return nil
}

// podCIDRs returns the current pod CIDRs.
func (s *Service) podCIDRs() []string {
	s.netMu.RLock()
	defer s.netMu.RUnlock()
	if s.podCIDR == "" {
		return nil
	}
	var out []string
	for _, c := range strings.Split(s.podCIDR, ",") {
		out = append(out, strings.TrimSpace(c))
	}
	return out
}
