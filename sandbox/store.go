package sandbox

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
)

// Store is the in-memory cache of sandboxes, keyed by ID. It resolves unique ID prefixes.
type Store struct {
	mu sync.RWMutex
	m  map[string]*Sandbox
}

// NewStore returns an empty store.
func NewStore() *Store { return &Store{m: map[string]*Sandbox{}} }

// Add inserts sb; an ID already present is AlreadyExists.
func (s *Store) Add(sb *Sandbox) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[sb.ID]; ok {
		return fmt.Errorf("sandbox %q: %w", sb.ID, errdefs.ErrAlreadyExists)
	}
	s.m[sb.ID] = sb
	return nil
}

// Get finds a sandbox by full ID or unique ID prefix.
func (s *Store) Get(id string) (*Sandbox, error) {
	if id == "" {
		return nil, fmt.Errorf("sandbox id is empty: %w", errdefs.ErrInvalidArgument)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if sb, ok := s.m[id]; ok {
		return sb, nil
	}
	var found *Sandbox
	for k, sb := range s.m {
		if strings.HasPrefix(k, id) {
			if found != nil {
				return nil, fmt.Errorf("sandbox id prefix %q is ambiguous: %w", id, errdefs.ErrInvalidArgument)
			}
			found = sb
		}
	}
	if found == nil {
		return nil, fmt.Errorf("sandbox %q: %w", id, errdefs.ErrNotFound)
	}
	return found, nil
}

// Delete removes id from the store.
func (s *Store) Delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// List returns every sandbox, oldest first.
func (s *Store) List() []*Sandbox {
	s.mu.RLock()
	out := make([]*Sandbox, 0, len(s.m))
	for _, sb := range s.m {
		out = append(out, sb)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt < out[j].CreatedAt })
	return out
}
