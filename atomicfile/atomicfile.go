// Package atomicfile writes files so that a crash (of the daemon or of the
// machine) at any moment leaves either the previous content or the new one,
// never a torn or empty file: the data goes to a temporary file in the same
// directory, which is fsynced, renamed over the target, and the directory is
// fsynced so that the rename itself is durable.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// TempPrefix starts the name of every temporary file this package makes,
// followed by the target's base name. A crash can leave one behind; such
// files are never read as content (see RemoveTemps).
const TempPrefix = ".atomic-"

// WriteFile replaces path with data, atomically and durably. perm is applied
// exactly (the umask does not narrow it). The directory must exist. On error
// the target is unchanged and the temporary file is removed.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	return writeFile(osFS{}, path, data, perm)
}

// MkdirAll is os.MkdirAll that also fsyncs the parent of every directory it
// creates, so that a file written durably below it cannot vanish with its
// directory after a machine crash.
func MkdirAll(dir string, perm fs.FileMode) error {
	return mkdirAll(osFS{}, dir, perm)
}

// RemoveTemps removes the temporary files a crash left behind in dir for the
// target named base (all of them when base is empty). A missing dir is not
// an error.
func RemoveTemps(dir, base string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("listing %s: %w", dir, err)
	}
	var errs []error
	for _, e := range entries {
		if isTemp(e.Name(), base) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// isTemp reports whether name is one of our temporary files for base (for
// any target when base is empty).
func isTemp(name, base string) bool {
	if base == "" {
		return strings.HasPrefix(name, TempPrefix)
	}
	return strings.HasPrefix(name, TempPrefix+base+".")
}

// file is the part of *os.File the writer uses.
type file interface {
	Name() string
	Write(p []byte) (int, error)
	Chmod(mode fs.FileMode) error
	Sync() error
	Close() error
}

// fileSystem is what the writer does to the file system; tests record and
// fail its operations to check every crash point.
type fileSystem interface {
	CreateTemp(dir, pattern string) (file, error)
	Rename(oldpath, newpath string) error
	Remove(name string) error
	SyncDir(dir string) error
	Mkdir(name string, perm fs.FileMode) error
	Stat(name string) (fs.FileInfo, error)
}

type osFS struct{}

func (osFS) CreateTemp(dir, pattern string) (file, error) { return os.CreateTemp(dir, pattern) }
func (osFS) Rename(oldpath, newpath string) error         { return os.Rename(oldpath, newpath) }
func (osFS) Remove(name string) error                     { return os.Remove(name) }
func (osFS) Mkdir(name string, perm fs.FileMode) error    { return os.Mkdir(name, perm) }
func (osFS) Stat(name string) (fs.FileInfo, error)        { return os.Stat(name) }

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	serr := d.Sync()
	cerr := d.Close()
	return errors.Join(serr, cerr)
}

func writeFile(fsys fileSystem, path string, data []byte, perm fs.FileMode) (retErr error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := fsys.CreateTemp(dir, TempPrefix+base+".*")
	if err != nil {
		return fmt.Errorf("creating temporary file for %s: %w", path, err)
	}
	tmp := f.Name()
	closed := false
	defer func() {
		if retErr != nil {
			if !closed {
				_ = f.Close()
			}
			_ = fsys.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Chmod(perm); err != nil {
		return fmt.Errorf("setting mode of %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", path, err)
	}
	closed = true
	if err := f.Close(); err != nil {
		return fmt.Errorf("closing %s: %w", path, err)
	}
	if err := fsys.Rename(tmp, path); err != nil {
		return fmt.Errorf("renaming %s into place: %w", path, err)
	}
	// The new content is in place; a failure to sync the directory only
	// means the rename may not survive a machine crash yet.
	if err := fsys.SyncDir(dir); err != nil {
		return fmt.Errorf("syncing directory of %s: %w", path, err)
	}
	return nil
}

func mkdirAll(fsys fileSystem, dir string, perm fs.FileMode) error {
	dir = filepath.Clean(dir)
	if fi, err := fsys.Stat(dir); err == nil {
		if !fi.IsDir() {
			return &fs.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}
		}
		return nil
	}
	parent := filepath.Dir(dir)
	if parent != dir {
		if err := mkdirAll(fsys, parent, perm); err != nil {
			return err
		}
	}
	if err := fsys.Mkdir(dir, perm); err != nil {
		if errors.Is(err, fs.ErrExist) {
			if fi, serr := fsys.Stat(dir); serr == nil && fi.IsDir() {
				return nil // made concurrently
			}
		}
		return fmt.Errorf("creating directory %s: %w", dir, err)
	}
	if err := fsys.SyncDir(parent); err != nil {
		return fmt.Errorf("syncing directory %s: %w", parent, err)
	}
	return nil
}
