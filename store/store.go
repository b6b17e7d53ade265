// Package store is the generic in-memory cache the daemon keeps of its
// sandboxes and containers: objects keyed by a unique ID, found by the full
// ID or a unique ID prefix. It is safe for concurrent use.
package store

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
)

// Store holds objects of type T keyed by their ID.
type Store[T any] struct {
	kind      string
	id        func(T) string
	createdAt func(T) int64

	mu sync.RWMutex
	m  map[string]T
}

// New returns an empty store. kind names the objects in errors ("sandbox",
// "container"); id gives an object's ID and createdAt its creation time,
// the order List returns them in.
func New[T any](kind string, id func(T) string, createdAt func(T) int64) *Store[T] {
	return &Store[T]{kind: kind, id: id, createdAt: createdAt, m: map[string]T{}}
}

// Add inserts v; an ID already present is errdefs.ErrAlreadyExists.
func (s *Store[T]) Add(v T) error {
	id := s.id(v)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[id]; ok {
		return fmt.Errorf("%s %q: %w", s.kind, id, errdefs.ErrAlreadyExists)
	}
	s.m[id] = v
	return nil
}

// Get finds an object by full ID or unique ID prefix. An empty or ambiguous
// ID is errdefs.ErrInvalidArgument, an unknown one errdefs.ErrNotFound.
func (s *Store[T]) Get(id string) (T, error) {
	var zero T
	if id == "" {
		return zero, fmt.Errorf("%s id is empty: %w", s.kind, errdefs.ErrInvalidArgument)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if v, ok := s.m[id]; ok {
		return v, nil
	}
	var (
		found T
		n     int
	)
	for k, v := range s.m {
		if strings.HasPrefix(k, id) {
			if n > 0 {
				return zero, fmt.Errorf("%s id prefix %q is ambiguous: %w", s.kind, id, errdefs.ErrInvalidArgument)
			}
			found, n = v, 1
		}
	}
	if n == 0 {
		return zero, fmt.Errorf("%s %q: %w", s.kind, id, errdefs.ErrNotFound)
	}
	return found, nil
}

// Delete removes id (the full ID); an absent ID is not an error.
func (s *Store[T]) Delete(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// Len is the number of objects held.
func (s *Store[T]) Len() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return len(s.m)
}

// List returns every object, oldest first (equal creation times by ID).
func (s *Store[T]) List() []T {
	s.mu.RLock()
	out := make([]T, 0, len(s.m))
	for _, v := range s.m {
		out = append(out, v)
	}
	s.mu.RUnlock()
	slices.SortFunc(out, func(a, b T) int {
		if c := cmp.Compare(s.createdAt(a), s.createdAt(b)); c != 0 {
			return c
		}
		return strings.Compare(s.id(a), s.id(b))
	})
	return out
}
