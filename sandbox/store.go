package sandbox

import "github.com/cri-containerd/cri-containerd/store"

// Store is the in-memory cache of sandboxes, keyed by ID. It resolves unique
// ID prefixes (see store.Store).
type Store = store.Store[*Sandbox]

// NewStore returns an empty store.
func NewStore() *Store {
	return store.New("sandbox",
		func(sb *Sandbox) string { return sb.ID },
		func(sb *Sandbox) int64 { return sb.CreatedAt })
}
