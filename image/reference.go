package image

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// minShortIDLen is the shortest hex prefix accepted as an image ID (Docker's short ID).
const minShortIDLen = 12

// NormalizeRef turns a user-given image reference into the canonical docker
// form containerd image records are named by: "busybox" becomes
// "docker.io/library/busybox:latest"; a reference with both a tag and a digest
// keeps only the digest. Empty or malformed references wrap
// errdefs.ErrInvalidArgument.
func NormalizeRef(ref string) (reference.Named, error) {
	if strings.TrimSpace(ref) == "" {
		return nil, fmt.Errorf("image reference must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	named, err := reference.ParseDockerRef(ref)
	if err != nil {
		return nil, fmt.Errorf("invalid image reference %q: %v: %w", ref, err, errdefs.ErrInvalidArgument)
	}
	return named, nil
}

// repoDigestAndTag returns the repo digest ("repo@sha256:<manifest>") and the
// repo tag ("repo:tag", empty for digest references) an image pulled by named
// is known by; manifest is the digest the reference resolved to.
func repoDigestAndTag(named reference.Named, manifest digest.Digest) (repoDigest, repoTag string) {
	if t, ok := named.(reference.NamedTagged); ok {
		repoTag = t.String()
	}
	if c, ok := named.(reference.Canonical); ok {
		repoDigest = c.String()
	} else {
		repoDigest = named.Name() + "@" + manifest.String()
	}
	return repoDigest, repoTag
}

// splitReferences sorts containerd record names into CRI repo tags and repo
// digests; names that are neither (the image ID record) are dropped. Both
// lists come back sorted so that every call reports them in the same order.
func splitReferences(names []string) (tags, digests []string) {
	for _, n := range names {
		if isFullID(n) {
			continue
		}
		parsed, err := reference.ParseAnyReference(n)
		if err != nil {
			continue
		}
		switch parsed.(type) {
		case reference.Canonical:
			digests = append(digests, parsed.String())
		case reference.Tagged:
			tags = append(tags, parsed.String())
		}
	}
	sort.Strings(tags)
	sort.Strings(digests)
	return tags, digests
}

// isFullID reports whether s is a full image ID ("sha256:<64 hex>").
func isFullID(s string) bool {
	d, err := digest.Parse(s)
	return err == nil && d.Algorithm() == digest.SHA256
}

// idPrefix returns the hex part of s when s can be (a prefix of) an image ID:
// "sha256:<hex>" or plain "<hex>" of at least minShortIDLen characters (a
// plain full 64-character ID included).
func idPrefix(s string) (string, bool) {
	hex, hadAlgo := strings.CutPrefix(s, "sha256:")
	if hex == "" || len(hex) > 64 {
		return "", false
	}
	for _, c := range hex {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return "", false
		}
	}
	if !hadAlgo && len(hex) < minShortIDLen {
		return "", false
	}
	return hex, true
}

// UserFromConfig returns the uid (when the image config's User is numeric)
// or the user name of an image user "user[:group]", as CRI reports it in
// Image.Uid / Image.Username. An empty user gives (nil, "").
func UserFromConfig(user string) (*int64, string) {
	if user == "" {
		return nil, ""
	}
	user, _, _ = strings.Cut(user, ":")
	if uid, err := strconv.ParseInt(user, 10, 64); err == nil {
		return &uid, ""
	}
	return nil, user
}
