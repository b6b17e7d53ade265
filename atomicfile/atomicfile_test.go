package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
)

var errInjected = errors.New("injected failure")

// recFS is the real file system with every operation recorded; the n-th
// operation (1-based) fails. With crash set, the failure is a crash: the
// process is gone, so nothing after it (the cleanup included) happens.
type recFS struct {
	osFS
	failAt  int
	partial bool // a failing Write writes half of its data first
	crash   bool
	ops     []string
	crashed bool
}

func (r *recFS) op(name string) error {
	if r.crashed {
		return errInjected // the process is dead: nothing more reaches the disk
	}
	r.ops = append(r.ops, name)
	if len(r.ops) == r.failAt {
		if r.crash {
			r.crashed = true
		}
		return errInjected
	}
	return nil
}

type recFile struct {
	*os.File
	fs *recFS
}

func (f recFile) Write(p []byte) (int, error) {
	wasDead := f.fs.crashed
	if err := f.fs.op("write"); err != nil {
		if f.fs.partial && !wasDead {
			n, _ := f.File.Write(p[:len(p)/2])
			return n, err
		}
		return 0, err
	}
	return f.File.Write(p)
}

func (f recFile) Chmod(m fs.FileMode) error {
	if err := f.fs.op("chmod"); err != nil {
		return err
	}
	return f.File.Chmod(m)
}

func (f recFile) Sync() error {
	if err := f.fs.op("fsync-file"); err != nil {
		return err
	}
	return f.File.Sync()
}

func (f recFile) Close() error {
	if err := f.fs.op("close"); err != nil {
		_ = f.File.Close() // a dead process's descriptors are closed too
		return err
	}
	return f.File.Close()
}

func (r *recFS) CreateTemp(dir, pattern string) (file, error) {
	if err := r.op("create-temp"); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	return recFile{File: f, fs: r}, nil
}

func (r *recFS) Rename(o, n string) error {
	if err := r.op("rename"); err != nil {
		return err
	}
	return os.Rename(o, n)
}

func (r *recFS) Remove(name string) error {
	if err := r.op("remove"); err != nil {
		return err
	}
	return os.Remove(name)
}

func (r *recFS) SyncDir(dir string) error {
	if err := r.op("fsync-dir"); err != nil {
		return err
	}
	return osFS{}.SyncDir(dir)
}

func (r *recFS) Mkdir(name string, perm fs.FileMode) error {
	if err := r.op("mkdir " + filepath.Base(name)); err != nil {
		return err
	}
	return os.Mkdir(name, perm)
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteFilePerm(t *testing.T) {
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := t.TempDir()
	for _, perm := range []fs.FileMode{0o600, 0o644, 0o640, 0o755} {
		p := filepath.Join(dir, "f"+perm.String())
		if err := WriteFile(p, []byte("x"), perm); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != perm {
			t.Errorf("mode = %v, want %v (umask must not narrow it)", fi.Mode().Perm(), perm)
		}
	}
}

func TestWriteFileReplace(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "status")
	for _, content := range []string{"first, long content", "2nd", ""} {
		if err := WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != content {
			t.Errorf("content = %q, want %q", b, content)
		}
	}
	if got := listDir(t, dir); !slices.Equal(got, []string{"status"}) {
		t.Errorf("dir holds %v, want only the target", got)
	}
	// A relative path writes in the current directory.
	t.Chdir(dir)
	if err := WriteFile("rel", []byte("r"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "rel")); string(b) != "r" {
		t.Errorf("relative write: %q", b)
	}
}

func TestWriteFileMissingDir(t *testing.T) {
	dir := t.TempDir()
	err := WriteFile(filepath.Join(dir, "nope", "f"), []byte("x"), 0o600)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("err = %v, want ErrNotExist", err)
	}
}

// TestWriteFileErrorCleansUp: an error at any step leaves the previous
// content and no temporary file.
func TestWriteFileErrorCleansUp(t *testing.T) {
	steps := []string{"create-temp", "write", "chmod", "fsync-file", "close", "rename"}
	for i, step := range steps {
		t.Run(step, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "status")
			if err := os.WriteFile(p, []byte("old content"), 0o600); err != nil {
				t.Fatal(err)
			}
			r := &recFS{failAt: i + 1, partial: true}
			if err := writeFile(r, p, []byte("new content that is longer"), 0o644); !errors.Is(err, errInjected) {
				t.Fatalf("err = %v, want the injected failure", err)
			}
			if r.ops[i] != step {
				t.Fatalf("op %d = %s, want %s (ops %v)", i, r.ops[i], step, r.ops)
			}
			if b, _ := os.ReadFile(p); string(b) != "old content" {
				t.Errorf("target = %q after a failed write", b)
			}
			if got := listDir(t, dir); !slices.Equal(got, []string{"status"}) {
				t.Errorf("dir holds %v, want only the target", got)
			}
		})
	}
}

// TestRegressionNonAtomicStateWrite: a crash at every point of a write
// (including in the middle of the data) leaves the target with either the
// whole previous content or the whole new one, never a torn or empty file;
// what a crash leaves behind is a temporary file that RemoveTemps removes.
// And a write that returned nil was made durable: the data was fsynced
// before the rename, and the directory after it (state files used to be
// renamed without either, so a machine crash could leave them empty).
func TestRegressionNonAtomicStateWrite(t *testing.T) {
	const oldContent, newContent = `{"pid":1,"startedAt":1}`, `{"pid":0,"startedAt":1,"finishedAt":2,"exitCode":137}`

	// The happy path, in order.
	dir := t.TempDir()
	p := filepath.Join(dir, "status")
	r := &recFS{}
	if err := writeFile(r, p, []byte(newContent), 0o600); err != nil {
		t.Fatal(err)
	}
	want := []string{"create-temp", "write", "chmod", "fsync-file", "close", "rename", "fsync-dir"}
	if !slices.Equal(r.ops, want) {
		t.Fatalf("ops = %v, want %v", r.ops, want)
	}

	for n := 1; n <= len(want); n++ {
		t.Run("crash at "+want[n-1], func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "status")
			if err := os.WriteFile(p, []byte(oldContent), 0o600); err != nil {
				t.Fatal(err)
			}
			r := &recFS{failAt: n, crash: true, partial: true}
			_ = writeFile(r, p, []byte(newContent), 0o600)
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatalf("target unreadable after a crash: %v", err)
			}
			if got := string(b); got != oldContent && got != newContent {
				t.Fatalf("torn target after a crash at %s: %q", want[n-1], got)
			}
			if n <= 5 && string(b) != oldContent { // before the rename
				t.Errorf("target = %q, want the previous content", b)
			}
			// The debris is recognisable and removable.
			if err := RemoveTemps(dir, "status"); err != nil {
				t.Fatal(err)
			}
			if got := listDir(t, dir); !slices.Equal(got, []string{"status"}) {
				t.Errorf("after RemoveTemps dir holds %v", got)
			}
		})
	}
}

func TestRemoveTemps(t *testing.T) {
	dir := t.TempDir()
	for _, n := range []string{"status", TempPrefix + "status.123", TempPrefix + "hosts.9", "other", TempPrefix + "statusx.1"} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := RemoveTemps(dir, "status"); err != nil {
		t.Fatal(err)
	}
	if got := listDir(t, dir); !slices.Equal(got, []string{TempPrefix + "hosts.9", TempPrefix + "statusx.1", "other", "status"}) {
		t.Errorf("after RemoveTemps(status): %v", got)
	}
	if err := RemoveTemps(dir, ""); err != nil {
		t.Fatal(err)
	}
	if got := listDir(t, dir); !slices.Equal(got, []string{"other", "status"}) {
		t.Errorf("after RemoveTemps(\"\"): %v", got)
	}
	if err := RemoveTemps(filepath.Join(dir, "missing"), ""); err != nil {
		t.Errorf("missing dir: %v", err)
	}
}

// TestMkdirAllSyncsParents: every directory made is made durable by an
// fsync of its parent; existing ones are left alone.
func TestMkdirAllSyncsParents(t *testing.T) {
	dir := t.TempDir()
	r := &recFS{}
	if err := mkdirAll(r, filepath.Join(dir, "a", "b", "c"), 0o700); err != nil {
		t.Fatal(err)
	}
	want := []string{"mkdir a", "fsync-dir", "mkdir b", "fsync-dir", "mkdir c", "fsync-dir"}
	if !slices.Equal(r.ops, want) {
		t.Errorf("ops = %v, want %v", r.ops, want)
	}
	fi, err := os.Stat(filepath.Join(dir, "a", "b", "c"))
	if err != nil || !fi.IsDir() {
		t.Fatalf("stat: %v", err)
	}
	r = &recFS{}
	if err := mkdirAll(r, filepath.Join(dir, "a", "b"), 0o700); err != nil || len(r.ops) != 0 {
		t.Errorf("existing dir: err %v ops %v", err, r.ops)
	}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := MkdirAll(filepath.Join(dir, "file", "x"), 0o700); !errors.Is(err, syscall.ENOTDIR) {
		t.Errorf("below a file: err = %v", err)
	}
	if err := MkdirAll(filepath.Join(dir, "x", "y"), 0o700); err != nil {
		t.Error(err)
	}
}
