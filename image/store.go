package image

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
)

// store is the in-memory index of CRI-visible images: image ID -> image, and
// containerd record name -> image ID. containerd stays the source of truth;
// the store is updated after every change made in containerd and rebuilt
// from it on start.
type store struct {
	mu     sync.RWMutex
	images map[string]*entry // by ID
	refs   map[string]string // record name -> ID
	pinned map[string]bool   // normalized pinned references
	// byTarget counts, per target (manifest) digest, the names pointing at
	// it, by image ID.
	byTarget map[string]map[string]int

	// seq counts mutations; touched is the seq of each name's last mutation,
	// so that a refresh computed from an older containerd read can tell it
	// lost a race (see apply).
	seq     uint64
	touched map[string]uint64
}

type entry struct {
	img Image
	// names are the containerd record names pointing at the image (tags,
	// digests and the ID record), with the target (manifest) digest of each.
	names map[string]string
	// pinnedNames are the names whose record carries the pinned label.
	pinnedNames map[string]struct{}
}

func newStore(pinned []string) *store {
	s := &store{images: map[string]*entry{}, refs: map[string]string{}, pinned: map[string]bool{},
		byTarget: map[string]map[string]int{}, touched: map[string]uint64{}}
	for _, p := range pinned {
		if p == "" {
			continue
		}
		if n, err := reference.ParseDockerRef(p); err == nil {
			s.pinned[n.String()] = true
		} else {
			s.pinned[p] = true
		}
	}
	return s
}

// put records that the containerd record name (whose target is the manifest
// digest target) points at img, which carries the image's ID-level facts;
// its name lists are ignored. labelPinned says the record has the pinned
// label.
func (s *store) put(name string, img Image, labelPinned bool, target string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.putLocked(name, img, labelPinned, target)
}

func (s *store) putLocked(name string, img Image, labelPinned bool, target string) {
	s.touch(name)
	if old, ok := s.refs[name]; ok && old != img.ID {
		s.dropLocked(name, old)
	}
	e, ok := s.images[img.ID]
	if !ok {
		e = &entry{img: img, names: map[string]string{}, pinnedNames: map[string]struct{}{}}
		s.images[img.ID] = e
	}
	if old, ok := e.names[name]; ok {
		s.untarget(old, img.ID)
	}
	e.names[name] = target
	s.retarget(target, img.ID)
	if labelPinned {
		e.pinnedNames[name] = struct{}{}
	} else {
		delete(e.pinnedNames, name)
	}
	s.refs[name] = img.ID
	s.refreshLocked(e)
}

// drop forgets the record name; the image goes when no name is left.
func (s *store) drop(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.touch(name)
	if id, ok := s.refs[name]; ok {
		s.dropLocked(name, id)
	}
}

func (s *store) touch(name string) {
	s.seq++
	s.touched[name] = s.seq
	if len(s.touched) > 4096 {
		for n, v := range s.touched {
			if v+4096 < s.seq {
				delete(s.touched, n)
			}
		}
	}
}

// version is the mutation count to pass to apply.
func (s *store) version() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.seq
}

// apply sets name to img (nil: absent) unless name was changed after
// version since, in which case the caller's containerd read may be stale:
// it returns false and the caller reads again; unless the name is already
// as the caller would set it (the change that came meanwhile has the same
// outcome; any later one updates the cache on its own).
func (s *store) apply(name string, img *Image, labelPinned bool, target string, since uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.touched[name] > since {
		return s.isLocked(name, img, labelPinned, target)
	}
	if img == nil {
		s.touch(name)
		if id, ok := s.refs[name]; ok {
			s.dropLocked(name, id)
		}
		return true
	}
	s.putLocked(name, *img, labelPinned, target)
	return true
}

// isLocked reports whether name is cached as img (nil: absent) with target
// and the pinned label as given.
func (s *store) isLocked(name string, img *Image, labelPinned bool, target string) bool {
	id, ok := s.refs[name]
	if img == nil || !ok {
		return img == nil && !ok
	}
	e, ok := s.images[id]
	if !ok || id != img.ID || e.names[name] != target {
		return false
	}
	_, pinned := e.pinnedNames[name]
	return pinned == labelPinned
}

func (s *store) dropLocked(name, id string) {
	delete(s.refs, name)
	e, ok := s.images[id]
	if !ok {
		return
	}
	if t, ok := e.names[name]; ok {
		s.untarget(t, id)
	}
	delete(e.names, name)
	delete(e.pinnedNames, name)
	if len(e.names) == 0 {
		delete(s.images, id)
		return
	}
	s.refreshLocked(e)
}

func (s *store) retarget(target, id string) {
	m := s.byTarget[target]
	if m == nil {
		m = map[string]int{}
		s.byTarget[target] = m
	}
	m[id]++
}

func (s *store) untarget(target, id string) {
	m := s.byTarget[target]
	if m == nil {
		return
	}
	if m[id]--; m[id] <= 0 {
		delete(m, id)
		if len(m) == 0 {
			delete(s.byTarget, target)
		}
	}
}

// infoByTarget returns the ID-level facts of the image some name points
// at target with (names lists not meaningful).
func (s *store) infoByTarget(target string) (Image, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for id := range s.byTarget[target] {
		if e, ok := s.images[id]; ok {
			img := e.img
			img.RepoTags, img.RepoDigests, img.References, img.Pinned = nil, nil, nil, false
			return img, true
		}
	}
	return Image{}, false
}

// target returns the target digest cached for the record name.
func (s *store) target(name string) (string, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if id, ok := s.refs[name]; ok {
		if e, ok := s.images[id]; ok {
			t, ok := e.names[name]
			return t, ok
		}
	}
	return "", false
}

// refreshLocked recomputes the derived fields of e from its names.
func (s *store) refreshLocked(e *entry) {
	names := make([]string, 0, len(e.names))
	for n := range e.names {
		names = append(names, n)
	}
	sort.Strings(names)
	e.img.References = names
	e.img.RepoTags, e.img.RepoDigests = splitReferences(names)
	pinned := len(e.pinnedNames) > 0
	for _, n := range names {
		if s.pinned[n] {
			pinned = true
		}
	}
	e.img.Pinned = pinned
}

// names returns the record names of image id.
func (s *store) names(id string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if e, ok := s.images[id]; ok {
		return append([]string(nil), e.img.References...)
	}
	return nil
}

// targets returns the distinct target digests the names of image id point at.
func (s *store) targets(id string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	e, ok := s.images[id]
	if !ok {
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, t := range e.names {
		if t != "" && !seen[t] {
			seen[t] = true
			out = append(out, t)
		}
	}
	sort.Strings(out)
	return out
}

// byID returns a copy of the image with the full ID.
func (s *store) byID(id string) (Image, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if e, ok := s.images[id]; ok {
		return e.img.clone(), true
	}
	return Image{}, false
}

// resolve finds an image by full ID, record name (normalized reference) or
// unique ID prefix, in that order.
func (s *store) resolve(ref string) (Image, error) {
	if ref == "" {
		return Image{}, fmt.Errorf("image reference must not be empty: %w", errdefs.ErrInvalidArgument)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if isFullID(ref) {
		if e, ok := s.images[ref]; ok {
			return e.img.clone(), nil
		}
		return Image{}, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
	}
	named, perr := reference.ParseDockerRef(ref)
	if perr == nil {
		if id, ok := s.refs[named.String()]; ok {
			if e, ok := s.images[id]; ok {
				return e.img.clone(), nil
			}
		}
	}
	if hex, ok := idPrefix(ref); ok {
		var found *entry
		for id, e := range s.images {
			if strings.HasPrefix(strings.TrimPrefix(id, "sha256:"), hex) {
				if found != nil {
					return Image{}, fmt.Errorf("image ID prefix %q is ambiguous: %w", ref, errdefs.ErrInvalidArgument)
				}
				found = e
			}
		}
		if found != nil {
			return found.img.clone(), nil
		}
		return Image{}, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
	}
	if perr != nil {
		return Image{}, fmt.Errorf("invalid image reference %q: %v: %w", ref, perr, errdefs.ErrInvalidArgument)
	}
	return Image{}, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
}

// list returns copies of every image, ordered by first repo tag, then first
// repo digest, then ID.
func (s *store) list() []Image {
	s.mu.RLock()
	out := make([]Image, 0, len(s.images))
	for _, e := range s.images {
		out = append(out, e.img.clone())
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return sortKey(out[i]) < sortKey(out[j]) })
	return out
}

func sortKey(img Image) string {
	switch {
	case len(img.RepoTags) > 0:
		return "0" + img.RepoTags[0] + "\x00" + img.ID
	case len(img.RepoDigests) > 0:
		return "1" + img.RepoDigests[0] + "\x00" + img.ID
	}
	return "2" + img.ID
}

// isPinnedName reports whether the normalized reference is configured as pinned.
func (s *store) isPinnedName(name string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.pinned[name]
}

// allNames returns every cached record name with its target digest.
func (s *store) allNames() map[string]string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make(map[string]string, len(s.refs))
	for n, id := range s.refs {
		if e, ok := s.images[id]; ok {
			out[n] = e.names[n]
		}
	}
	return out
}
