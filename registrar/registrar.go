// Package registrar reserves sandbox and container names, so that two
// objects can never hold the same CRI name at once.
package registrar

import (
	"fmt"
	"sync"

	"github.com/containerd/errdefs"
)

// Registrar maps unique names to the IDs that hold them.
type Registrar struct {
	mu    sync.Mutex
	names map[string]string
	ids   map[string]string
}

// New returns an empty registrar.
func New() *Registrar {
	return &Registrar{names: map[string]string{}, ids: map[string]string{}}
}

// Reserve claims name for id. Reserving the same pair twice is fine; a name
// held by another id is an AlreadyExists error naming the holder.
func (r *Registrar) Reserve(name, id string) error {
	if name == "" || id == "" {
		return fmt.Errorf("empty name %q or id %q: %w", name, id, errdefs.ErrInvalidArgument)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if holder, ok := r.names[name]; ok {
		if holder == id {
			return nil
		}
		return fmt.Errorf("name %q is reserved for %q: %w", name, holder, errdefs.ErrAlreadyExists)
	}
	if n, ok := r.ids[id]; ok {
		return fmt.Errorf("id %q already holds name %q: %w", id, n, errdefs.ErrAlreadyExists)
	}
	r.names[name] = id
	r.ids[id] = name
	return nil
}

// ReleaseByID frees the name held by id, if any.
func (r *Registrar) ReleaseByID(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if name, ok := r.ids[id]; ok {
		delete(r.names, name)
		delete(r.ids, id)
	}
}

// ReleaseByName frees name, if reserved.
func (r *Registrar) ReleaseByName(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if id, ok := r.names[name]; ok {
		delete(r.names, name)
		delete(r.ids, id)
	}
}

// Len returns the number of reservations.
func (r *Registrar) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.names)
}
