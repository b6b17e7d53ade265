package container

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/atomicfile"
	"github.com/cri-containerd/cri-containerd/containerio"
)

func TestStatusState(t *testing.T) {
	for _, tc := range []struct {
		name string
		st   Status
		want runtimeapi.ContainerState
	}{
		{"zero", Status{}, runtimeapi.ContainerState_CONTAINER_UNKNOWN},
		{"created", Status{CreatedAt: 1}, runtimeapi.ContainerState_CONTAINER_CREATED},
		{"running", Status{CreatedAt: 1, StartedAt: 2}, runtimeapi.ContainerState_CONTAINER_RUNNING},
		{"exited", Status{CreatedAt: 1, StartedAt: 2, FinishedAt: 3}, runtimeapi.ContainerState_CONTAINER_EXITED},
		{"exited without start", Status{CreatedAt: 1, FinishedAt: 3}, runtimeapi.ContainerState_CONTAINER_EXITED},
		{"unknown wins", Status{CreatedAt: 1, StartedAt: 2, Unknown: true}, runtimeapi.ContainerState_CONTAINER_UNKNOWN},
	} {
		if got := tc.st.State(); got != tc.want {
			t.Errorf("%s: State() = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestStatusCheckpoint: an exit recorded by Update survives the process
// (LoadStatus reads it back) and wakes Stopped waiters.
func TestStatusCheckpoint(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c1")
	c := New(Metadata{ID: "c1"}, dir, Status{CreatedAt: 1})
	if err := c.Update(func(st *Status) error { st.StartedAt = 2; st.Pid = 42; return nil }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-c.Stopped():
		t.Fatal("Stopped closed while running")
	default:
	}
	if err := c.Update(func(st *Status) error { st.FinishedAt = 3; st.ExitCode = 7; st.Reason = "Error"; return nil }); err != nil {
		t.Fatal(err)
	}
	<-c.Stopped()
	st, ok, err := LoadStatus(dir)
	if err != nil || !ok {
		t.Fatalf("LoadStatus: ok=%v err=%v", ok, err)
	}
	if st.ExitCode != 7 || st.Reason != "Error" || st.State() != runtimeapi.ContainerState_CONTAINER_EXITED {
		t.Fatalf("loaded %+v", st)
	}
	// A failed update leaves the status unchanged.
	if err := c.Update(func(st *Status) error { st.ExitCode = 9; return fmt.Errorf("nope") }); err == nil {
		t.Fatal("expected error")
	}
	if c.Status().ExitCode != 7 {
		t.Fatal("failed update changed the status")
	}
	if _, ok, err := LoadStatus(filepath.Join(t.TempDir(), "none")); ok || err != nil {
		t.Fatalf("missing status: ok=%v err=%v", ok, err)
	}
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// TestStatusCheckpointTornWrite: a checkpoint whose write fails
// after part of the data reached the disk (here: the file size limit, as a
// full disk would) and the debris of a daemon killed in the middle of a
// checkpoint both leave the previous status readable, and no torn status
// file ever exists. (Not a regression test: the old writer renamed a temp
// file too; what it lacked, fsync, is pinned by atomicfile's
// TestRegressionNonAtomicStateWrite.)
func TestStatusCheckpointTornWrite(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c1")
	c := New(Metadata{ID: "c1"}, dir, Status{CreatedAt: 1})
	if err := c.Update(func(st *Status) error { st.StartedAt = 2; st.Pid = 42; return nil }); err != nil {
		t.Fatal(err)
	}
	prev := c.Status()
	onDisk, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		t.Fatal(err)
	}

	// The write of the next checkpoint fails half way.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		t.Fatal(err)
	}
	small := lim
	small.Cur = uint64(len(onDisk)) + 16
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &small); err != nil {
		t.Skipf("cannot lower the file size limit: %v", err)
	}
	err = c.Update(func(st *Status) error {
		st.FinishedAt = 3
		st.ExitCode = 137
		st.Message = strings.Repeat("x", 4096)
		return nil
	})
	if rerr := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); rerr != nil {
		t.Fatal(rerr)
	}
	if err == nil {
		t.Fatal("a checkpoint larger than the file size limit was written")
	}
	if got := c.Status(); got != prev {
		t.Errorf("in-memory status changed by a failed checkpoint: %+v", got)
	}
	st, ok, err := LoadStatus(dir)
	if err != nil || !ok || st != prev {
		t.Fatalf("after a failed checkpoint LoadStatus = %+v, %v, %v; want %+v", st, ok, err, prev)
	}
	if got := dirNames(t, dir); !slices.Equal(got, []string{"status"}) {
		t.Errorf("a failed checkpoint left %v", got)
	}

	// A daemon killed while writing leaves a partial temporary file.
	next := prev
	next.FinishedAt, next.ExitCode = 3, 137
	b, _ := json.Marshal(next)
	debris := filepath.Join(dir, atomicfile.TempPrefix+"status.1234")
	if err := os.WriteFile(debris, b[:len(b)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	st, ok, err = LoadStatus(dir)
	if err != nil || !ok || st != prev {
		t.Fatalf("with crash debris LoadStatus = %+v, %v, %v; want %+v", st, ok, err, prev)
	}
	if got := dirNames(t, dir); !slices.Equal(got, []string{"status"}) {
		t.Errorf("crash debris not removed: %v", got)
	}
	// And the next checkpoint works.
	if err := c.Update(func(st *Status) error { st.FinishedAt = 3; st.ExitCode = 137; return nil }); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := LoadStatus(dir); st.ExitCode != 137 {
		t.Errorf("status after recovery from a failed write: %+v", st)
	}
}

// TestRegressionContainerIORace: StartContainer (and recovery) set a
// container's IO while it is in the store, where attach, log reopening,
// removal and the exit handler read it concurrently. Run with -race.
func TestRegressionContainerIORace(t *testing.T) {
	c := New(Metadata{ID: "c1"}, t.TempDir(), Status{CreatedAt: 1})
	if c.IO() != nil {
		t.Fatal("new container has IO")
	}
	ios := make([]*containerio.ContainerIO, 4)
	for i := range ios {
		ios[i] = &containerio.ContainerIO{}
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for _, io := range ios {
			c.SetIO(io)
		}
	})
	for range 4 {
		wg.Go(func() {
			for range 100 {
				if io := c.IO(); io != nil && !slices.Contains(ios, io) {
					t.Error("IO returned a value never set")
					return
				}
			}
		})
	}
	wg.Wait()
	if c.IO() != ios[len(ios)-1] {
		t.Error("IO is not the last one set")
	}
}

// TestRegressionTransientFlagsCheckpointed: the Starting flag of a start in
// progress used to be written with the checkpoint StartContainer makes, so
// a daemon killed before the start returned recovered a container that was
// "starting" forever and could never be removed (nor started).
func TestRegressionTransientFlagsCheckpointed(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "c1")
	c := New(Metadata{ID: "c1"}, dir, Status{CreatedAt: 1})
	c.UpdateMemory(func(st *Status) { st.Starting = true; st.Removing = true })
	if err := c.Update(func(st *Status) error { st.StartedAt = 2; return nil }); err != nil {
		t.Fatal(err)
	}
	if st := c.Status(); !st.Starting || !st.Removing {
		t.Errorf("in-memory flags lost: %+v", st)
	}
	st, ok, err := LoadStatus(dir)
	if err != nil || !ok {
		t.Fatalf("LoadStatus: %v %v", ok, err)
	}
	if st.Starting || st.Removing || st.StartedAt != 2 {
		t.Errorf("recovered status %+v: the in-flight flags must not survive the process", st)
	}
	// Checkpoints written by older versions carry them: they are ignored.
	if err := os.WriteFile(filepath.Join(dir, "status"), []byte(`{"createdAt":1,"startedAt":2,"starting":true,"removing":true}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := LoadStatus(dir); st.Starting || st.Removing {
		t.Errorf("old checkpoint loaded as %+v", st)
	}
}

func TestStore(t *testing.T) {
	s := NewStore()
	for i, id := range []string{"aaa111", "aab222", "bbb333"} {
		c := New(Metadata{ID: id, SandboxID: fmt.Sprintf("pod%d", i%2), CreatedAt: int64(i)}, t.TempDir(), Status{})
		if err := s.Add(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Add(New(Metadata{ID: "aaa111"}, t.TempDir(), Status{})); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("duplicate add: %v", err)
	}
	for _, tc := range []struct {
		q, want string
		check   func(error) bool
	}{
		{"aaa", "aaa111", nil},
		{"aa", "", errdefs.IsInvalidArgument},
		{"zzz", "", errdefs.IsNotFound},
		{"", "", errdefs.IsInvalidArgument},
		{"bbb333", "bbb333", nil},
	} {
		c, err := s.Get(tc.q)
		if tc.check != nil {
			if !tc.check(err) {
				t.Errorf("Get(%q) err = %v", tc.q, err)
			}
			continue
		}
		if err != nil || c.ID != tc.want {
			t.Errorf("Get(%q) = %v, %v", tc.q, c, err)
		}
	}
	if n := len(s.ListBySandbox("pod0")); n != 2 {
		t.Errorf("ListBySandbox(pod0) = %d, want 2", n)
	}
	l := s.List()
	if len(l) != 3 || l[0].ID != "aaa111" || l[2].ID != "bbb333" {
		t.Errorf("List order wrong")
	}
	s.Delete("aab222")
	if _, err := s.Get("aab"); !errdefs.IsNotFound(err) {
		t.Errorf("after delete: %v", err)
	}
}

func BenchmarkStoreGetByID(b *testing.B) {
	s := NewStore()
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = fmt.Sprintf("%064x", i)
		_ = s.Add(New(Metadata{ID: ids[i]}, b.TempDir(), Status{}))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.Get(ids[i%len(ids)]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStoreGetByPrefix(b *testing.B) {
	s := NewStore()
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = fmt.Sprintf("%x", sha256.Sum256([]byte(fmt.Sprint(i))))
		_ = s.Add(New(Metadata{ID: ids[i]}, b.TempDir(), Status{}))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := ids[i%len(ids)]
		if _, err := s.Get(id[:12]); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkStoreList(b *testing.B) {
	s := NewStore()
	for i := 0; i < 1000; i++ {
		_ = s.Add(New(Metadata{ID: fmt.Sprintf("%064x", i), CreatedAt: int64(i)}, b.TempDir(), Status{}))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if len(s.List()) != 1000 {
			b.Fatal("short list")
		}
	}
}
