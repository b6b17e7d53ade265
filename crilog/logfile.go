package crilog

import (
	"fmt"
	"os"
	"sync"
	"syscall"
)

// LogFileMode is the permission of a newly created container log file.
const LogFileMode os.FileMode = 0o640

const logFileFlags = os.O_CREATE | os.O_APPEND | os.O_WRONLY | syscall.O_NOFOLLOW

// LogFile is a container log file shared by the stdout and stderr loggers of a
// container. Each Write is performed under a mutex, so one record never
// interleaves with another, and Reopen swaps the file under the same mutex.
type LogFile struct {
	path string

	mu     sync.Mutex
	f      *os.File
	closed bool
}

// OpenLogFile opens (creating it if needed, appending otherwise) the log file
// at path. The parent directory must exist; a symbolic link at path is refused.
func OpenLogFile(path string) (*LogFile, error) {
	f, err := openLog(path)
	if err != nil {
		return nil, err
	}
	return &LogFile{path: path, f: f}, nil
}

func openLog(path string) (*os.File, error) {
	f, err := os.OpenFile(path, logFileFlags, LogFileMode)
	if err != nil {
		return nil, fmt.Errorf("opening container log file: %w", err)
	}
	return f, nil
}

// Path returns the path of the log file.
func (l *LogFile) Path() string { return l.path }

// Write appends p to the current file in a single write.
func (l *LogFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, fmt.Errorf("writing container log file %s: %w", l.path, ErrClosed)
	}
	return l.f.Write(p)
}

// Reopen opens the path again (creating a new file when the old one was
// renamed away) and makes it the target of the next Write. On error the
// current file is kept. The previous file is closed; an error closing it is
// ignored (nothing was lost: every Write went through already).
func (l *LogFile) Reopen() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return fmt.Errorf("reopening container log file %s: %w", l.path, ErrClosed)
	}
	f, err := openLog(l.path)
	if err != nil {
		return err
	}
	old := l.f
	l.f = f
	_ = old.Close()
	return nil
}

// Close closes the file. Later Writes and Reopens fail with ErrClosed. Close
// is idempotent.
func (l *LogFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("closing container log file %s: %w", l.path, err)
	}
	return nil
}
