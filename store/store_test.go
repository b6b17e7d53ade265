package store

import (
	"crypto/sha256"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
)

type obj struct {
	id      string
	created int64
}

func newObjStore(objs ...*obj) *Store[*obj] {
	s := New("thing", func(o *obj) string { return o.id }, func(o *obj) int64 { return o.created })
	for _, o := range objs {
		if err := s.Add(o); err != nil {
			panic(err)
		}
	}
	return s
}

func TestGet(t *testing.T) {
	s := newObjStore(&obj{id: "abc123"}, &obj{id: "abd456"}, &obj{id: "xyz"}, &obj{id: "xyz789"})
	tests := []struct {
		name    string
		id      string
		want    string
		wantErr func(error) bool
		msg     string
	}{
		{name: "full id", id: "abc123", want: "abc123"},
		{name: "unique prefix", id: "abc", want: "abc123"},
		{name: "ambiguous one-char prefix", id: "x", wantErr: errdefs.IsInvalidArgument, msg: `thing id prefix "x" is ambiguous: invalid argument`},
		{name: "full id that is also a prefix of another", id: "xyz", want: "xyz"},
		{name: "ambiguous prefix", id: "ab", wantErr: errdefs.IsInvalidArgument, msg: `thing id prefix "ab" is ambiguous: invalid argument`},
		{name: "empty", id: "", wantErr: errdefs.IsInvalidArgument, msg: "thing id is empty: invalid argument"},
		{name: "unknown", id: "nope", wantErr: errdefs.IsNotFound, msg: `thing "nope": not found`},
		{name: "longer than any id", id: "abc1234", wantErr: errdefs.IsNotFound, msg: `thing "abc1234": not found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Get(tt.id)
			if tt.wantErr != nil {
				if err == nil || !tt.wantErr(err) {
					t.Fatalf("Get(%q) = %v, %v; want error of the expected kind", tt.id, got, err)
				}
				if err.Error() != tt.msg {
					t.Errorf("Get(%q) error = %q, want %q", tt.id, err, tt.msg)
				}
				if got != nil {
					t.Errorf("Get(%q) returned %v with an error", tt.id, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("Get(%q): %v", tt.id, err)
			}
			if got.id != tt.want {
				t.Errorf("Get(%q) = %q, want %q", tt.id, got.id, tt.want)
			}
		})
	}
}

func TestAddDelete(t *testing.T) {
	tests := []struct {
		name  string
		ops   func(s *Store[*obj]) error
		check func(t *testing.T, s *Store[*obj], err error)
	}{
		{
			name: "duplicate id is AlreadyExists and keeps the first",
			ops: func(s *Store[*obj]) error {
				_ = s.Add(&obj{id: "a", created: 1})
				return s.Add(&obj{id: "a", created: 2})
			},
			check: func(t *testing.T, s *Store[*obj], err error) {
				if !errdefs.IsAlreadyExists(err) || err.Error() != `thing "a": already exists` {
					t.Fatalf("second Add = %v, want AlreadyExists", err)
				}
				if o, _ := s.Get("a"); o.created != 1 {
					t.Errorf("the second Add replaced the first object")
				}
			},
		},
		{
			name: "delete then add again",
			ops: func(s *Store[*obj]) error {
				_ = s.Add(&obj{id: "a"})
				s.Delete("a")
				return s.Add(&obj{id: "a"})
			},
			check: func(t *testing.T, s *Store[*obj], err error) {
				if err != nil || s.Len() != 1 {
					t.Fatalf("Add after Delete = %v, len %d", err, s.Len())
				}
			},
		},
		{
			name: "delete of an absent id and of a prefix does nothing",
			ops: func(s *Store[*obj]) error {
				_ = s.Add(&obj{id: "abc"})
				s.Delete("zzz")
				s.Delete("ab")
				return nil
			},
			check: func(t *testing.T, s *Store[*obj], err error) {
				if _, gerr := s.Get("abc"); gerr != nil || s.Len() != 1 {
					t.Fatalf("Delete removed the wrong object: %v, len %d", gerr, s.Len())
				}
			},
		},
		{
			name: "deleted id is NotFound and no longer makes a prefix ambiguous",
			ops: func(s *Store[*obj]) error {
				_ = s.Add(&obj{id: "ab1"})
				_ = s.Add(&obj{id: "ab2"})
				s.Delete("ab2")
				return nil
			},
			check: func(t *testing.T, s *Store[*obj], err error) {
				if _, gerr := s.Get("ab2"); !errdefs.IsNotFound(gerr) {
					t.Errorf("Get(deleted) = %v, want NotFound", gerr)
				}
				if o, gerr := s.Get("ab"); gerr != nil || o.id != "ab1" {
					t.Errorf("Get(ab) = %v, %v; want ab1", o, gerr)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newObjStore()
			err := tt.ops(s)
			tt.check(t, s, err)
		})
	}
}

func TestList(t *testing.T) {
	tests := []struct {
		name string
		objs []*obj
		want []string
	}{
		{name: "empty", want: []string{}},
		{name: "oldest first", objs: []*obj{{id: "c", created: 3}, {id: "a", created: 1}, {id: "b", created: 2}}, want: []string{"a", "b", "c"}},
		{name: "equal times by id", objs: []*obj{{id: "z", created: 1}, {id: "y", created: 1}, {id: "x", created: 0}}, want: []string{"x", "y", "z"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := newObjStore(tt.objs...).List()
			if got == nil {
				t.Fatal("List returned nil")
			}
			ids := make([]string, 0, len(got))
			for _, o := range got {
				ids = append(ids, o.id)
			}
			if fmt.Sprint(ids) != fmt.Sprint(tt.want) {
				t.Errorf("List = %v, want %v", ids, tt.want)
			}
		})
	}
}

// TestConcurrentUse runs adds, lookups, lists and deletes at once; -race
// checks the locking, and every ID added exactly once is found by its owner.
func TestConcurrentUse(t *testing.T) {
	s := newObjStore()
	const workers, per = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, workers*per)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < per; i++ {
				id := "w" + strconv.Itoa(w) + "-" + strconv.Itoa(i)
				if err := s.Add(&obj{id: id, created: int64(i)}); err != nil {
					errs <- err
					continue
				}
				if o, err := s.Get(id); err != nil || o.id != id {
					errs <- fmt.Errorf("Get(%s) = %v, %v", id, o, err)
				}
				_, _ = s.Get("w") // ambiguous or found, never a race
				_ = s.List()
				if i%2 == 0 {
					s.Delete(id)
				}
			}
		}(w)
	}
	// A second writer racing on the same IDs: exactly one Add of each wins.
	var dupWins, dupLosses int
	var mu sync.Mutex
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < per; i++ {
				err := s.Add(&obj{id: "dup-" + strconv.Itoa(i)})
				mu.Lock()
				if err == nil {
					dupWins++
				} else if errdefs.IsAlreadyExists(err) {
					dupLosses++
				} else {
					errs <- err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if dupWins != per || dupLosses != per {
		t.Errorf("racing Adds of the same IDs: %d won, %d lost; want %d each", dupWins, dupLosses, per)
	}
	if want := workers*per/2 + per; s.Len() != want || len(s.List()) != want {
		t.Errorf("Len = %d, List = %d; want %d", s.Len(), len(s.List()), want)
	}
}

// benchID is a 64-hex-digit ID like the daemon's, spread as random IDs are.
func benchID(i int) string {
	return fmt.Sprintf("%x", sha256.Sum256([]byte(strconv.Itoa(i))))
}

func benchStore(n int) *Store[*obj] {
	s := newObjStore()
	for i := 0; i < n; i++ {
		_ = s.Add(&obj{id: benchID(i), created: int64(i)})
	}
	return s
}

func BenchmarkGet(b *testing.B) {
	for _, n := range []int{10, 1000} {
		s := benchStore(n)
		full := benchID(n / 2)
		prefix := full[:12] // unique among n random IDs
		b.Run(fmt.Sprintf("full/n=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := s.Get(full); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("prefix/n=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if _, err := s.Get(prefix); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkList(b *testing.B) {
	for _, n := range []int{10, 1000} {
		s := benchStore(n)
		b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				if got := s.List(); len(got) != n {
					b.Fatalf("List = %d objects", len(got))
				}
			}
		})
	}
}
