package doctor

import (
	"context"
	"crypto/sha512"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
)

// ErrNoIPTables is returned by IPTables.Rules when the binary is missing.
var ErrNoIPTables = errors.New("iptables binary not found")

// ExecIPTables runs the iptables / ip6tables binaries.
type ExecIPTables struct{}

func iptBinary(v6 bool) string {
	if v6 {
		return "ip6tables"
	}
	return "iptables"
}

// Rules implements IPTables.
func (ExecIPTables) Rules(ctx context.Context, v6 bool, table string) ([]string, error) {
	bin, err := exec.LookPath(iptBinary(v6))
	if err != nil {
		return nil, ErrNoIPTables
	}
	out, err := exec.CommandContext(ctx, bin, "-w", "-t", table, "-S").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("%s -t %s -S: %w: %s", bin, table, err, strings.TrimSpace(string(ee.Stderr)))
		}
		return nil, fmt.Errorf("%s -t %s -S: %w", bin, table, err)
	}
	return strings.Split(string(out), "\n"), nil
}

// Run implements IPTables.
func (ExecIPTables) Run(ctx context.Context, v6 bool, args ...string) error {
	bin := iptBinary(v6)
	out, err := exec.CommandContext(ctx, bin, append([]string{"-w"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", bin, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// iptRule is one "-A chain ..." line of iptables -S.
type iptRule struct {
	Chain   string
	Args    []string // after "-A chain"
	Comment string
	Target  string // the -j target
}

// iptTable is one table of one family.
type iptTable struct {
	V6     bool
	Table  string
	Chains map[string]bool
	Rules  []iptRule
}

// parseIPTables parses `iptables -S` output.
func parseIPTables(v6 bool, table string, lines []string) iptTable {
	t := iptTable{V6: v6, Table: table, Chains: map[string]bool{}}
	for _, l := range lines {
		f := splitIPTablesLine(l)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "-N":
			t.Chains[f[1]] = true
		case "-A":
			r := iptRule{Chain: f[1], Args: f[2:]}
			for i := 2; i+1 < len(f); i++ {
				switch f[i] {
				case "--comment":
					r.Comment = f[i+1]
				case "-j", "-g":
					r.Target = f[i+1]
				}
			}
			t.Rules = append(t.Rules, r)
		}
	}
	return t
}

// splitIPTablesLine splits an iptables -S line into words; double-quoted
// words may hold spaces and \" escapes (iptables quotes comments that way).
func splitIPTablesLine(l string) []string {
	var out []string
	var cur strings.Builder
	inWord, inQuote := false, false
	for i := 0; i < len(l); i++ {
		c := l[i]
		switch {
		case inQuote && c == '\\' && i+1 < len(l):
			i++
			cur.WriteByte(l[i])
		case c == '"':
			inQuote = !inQuote
			inWord = true
		case !inQuote && (c == ' ' || c == '\t' || c == '\r'):
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out
}

// cniCommentRE matches the comments the bridge (ipMasq) and portmap plugins
// put on their rules: `name: "<net>" id: "<id>"`, `dnat name: ...`.
var cniCommentRE = regexp.MustCompile(`(?:^|\s)name: "([^"]+)" id: "([^"]+)"`)

// commentOwner returns the network and container ID a CNI comment names.
func commentOwner(comment string) (network, id string, ok bool) {
	m := cniCommentRE.FindStringSubmatch(comment)
	if m == nil {
		return "", "", false
	}
	return m[1], m[2], true
}

// cniChainName is the chain name the CNI plugins derive from a network and
// a container ID ("CNI-" + prefix + hex(sha512(network+id)), 28 characters).
func cniChainName(network, id, prefix string) string {
	sum := sha512.Sum512([]byte(network + id))
	return fmt.Sprintf("CNI-%s%x", prefix, sum)[:28]
}

// isPerPodChain tells the per-pod CNI chains from the shared ones (CNI-HOSTPORT-*, CNI-FORWARD...).
func isPerPodChain(c string) bool {
	return strings.HasPrefix(c, "CNI-") && !strings.HasPrefix(c, "CNI-HOSTPORT-") && c != "CNI-FORWARD" && c != "CNI-ADMIN"
}

// chainOwners maps each per-pod chain of t to the (network, id) that a
// comment names, for networks in nets.
func chainOwners(t iptTable, nets map[string]bool) map[string][2]string {
	out := map[string][2]string{}
	for _, r := range t.Rules {
		n, id, ok := commentOwner(r.Comment)
		if !ok || !nets[n] {
			continue
		}
		if isPerPodChain(r.Target) && t.Chains[r.Target] {
			out[r.Target] = [2]string{n, id}
		}
		if isPerPodChain(r.Chain) {
			out[r.Chain] = [2]string{n, id}
		}
	}
	return out
}
