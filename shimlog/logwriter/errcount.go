package logwriter

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// ErrorsFileName is the name of the log write error count file
// (Options.ErrorsPath) in the container's directory.
const ErrorsFileName = "log-write-errors"

// writeErrorCount replaces the count file at path with n (write to a
// temporary file, then rename: a reader sees the old count or the new one).
func writeErrorCount(path string, n int64) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing log write error count: %w", err)
	}
	_, werr := tmp.WriteString(strconv.FormatInt(n, 10) + "\n")
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("writing log write error count: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		_ = os.Remove(tmp.Name())
		return fmt.Errorf("writing log write error count: %w", err)
	}
	return nil
}

// ReadErrorCount returns the number of log records a writer could not
// write, from its count file; a missing file is 0 (no error so far, or a
// writer that keeps no count).
func ReadErrorCount(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("reading log write error count: %w", err)
	}
	n, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("log write error count file %s holds %q", path, bytes.TrimSpace(b))
	}
	return n, nil
}
