package logwriter

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"
)

// Client talks to the log writer of one container over its control socket.
type Client struct {
	// Path is the control socket.
	Path string
}

// dial connects and sends req. A missing socket or a refused connection is
// ErrNotRunning.
func (c Client) dial(ctx context.Context, req request) (net.Conn, *bufio.Reader, error) {
	var conn net.Conn
	err := withSocketPath(c.Path, func(p string) error {
		var d net.Dialer
		cn, err := d.DialContext(ctx, "unix", p)
		if err != nil {
			return err
		}
		conn = cn
		return nil
	})
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, nil, fmt.Errorf("%w (%s): %w", ErrNotRunning, c.Path, err)
		}
		return nil, nil, fmt.Errorf("connecting to log writer %s: %w", c.Path, err)
	}
	b, err := json.Marshal(req)
	if err != nil {
		_ = conn.Close()
		return nil, nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetWriteDeadline(dl)
	}
	if _, err := conn.Write(append(b, '\n')); err != nil {
		_ = conn.Close()
		return nil, nil, fmt.Errorf("sending %s request to log writer %s: %w", req.Op, c.Path, err)
	}
	_ = conn.SetWriteDeadline(time.Time{})
	return conn, bufio.NewReaderSize(conn, 64<<10), nil
}

// readResponse reads the response line, giving up when ctx is done.
func readResponse(ctx context.Context, conn net.Conn, br *bufio.Reader, op string) (response, error) {
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	line, err := readLine(br)
	if err != nil {
		if ctx.Err() != nil {
			return response{}, fmt.Errorf("%s request to log writer: %w", op, ctx.Err())
		}
		if errors.Is(err, io.EOF) {
			return response{}, fmt.Errorf("%s request to log writer: connection closed: %w", op, ErrNotRunning)
		}
		return response{}, fmt.Errorf("reading %s response from log writer: %w", op, err)
	}
	var r response
	if err := json.Unmarshal(line, &r); err != nil {
		return response{}, fmt.Errorf("decoding %s response from log writer: %w", op, err)
	}
	if r.Error != "" {
		return r, fmt.Errorf("log writer %s: %s", op, r.Error)
	}
	return r, nil
}

func (c Client) call(ctx context.Context, req request) (response, error) {
	conn, br, err := c.dial(ctx, req)
	if err != nil {
		return response{}, err
	}
	defer conn.Close()
	return readResponse(ctx, conn, br, req.Op)
}

// Status returns the writer's status.
func (c Client) Status(ctx context.Context) (Status, error) {
	r, err := c.call(ctx, request{Op: OpStatus})
	if err != nil {
		return Status{}, err
	}
	if r.Status == nil {
		return Status{}, errors.New("log writer status: empty answer")
	}
	return *r.Status, nil
}

// Reopen makes the writer reopen the log file (CRI ReopenContainerLog).
func (c Client) Reopen(ctx context.Context) error {
	_, err := c.call(ctx, request{Op: OpReopen})
	return err
}

// Wait returns nil once the container output has ended and the log is
// closed, or when no writer runs any more; ctx bounds the wait.
func (c Client) Wait(ctx context.Context) error {
	_, err := c.call(ctx, request{Op: OpWait})
	if errors.Is(err, ErrNotRunning) {
		return nil
	}
	return err
}

// Attach copies the live output to stdout and stderr (either may be nil: not
// requested) until the output ends (nil), ctx is done (ctx.Err()), a writer
// fails or the writer detaches the client (an error).
func (c Client) Attach(ctx context.Context, stdout, stderr io.Writer) error {
	return c.AttachNotify(ctx, stdout, stderr, nil)
}

// AttachNotify is Attach that calls attached (when not nil) once the writer
// has subscribed the client: output written from then on reaches it.
func (c Client) AttachNotify(ctx context.Context, stdout, stderr io.Writer, attached func()) error {
	conn, br, err := c.dial(ctx, request{Op: OpAttach, Stdout: stdout != nil, Stderr: stderr != nil})
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := readResponse(ctx, conn, br, OpAttach); err != nil {
		return err
	}
	if attached != nil {
		attached()
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	var buf []byte
	for {
		stream, data, err := readFrame(br, buf)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("reading attached output: %w", err)
		}
		buf = data[:0]
		var w io.Writer
		switch stream {
		case frameStdout:
			w = stdout
		case frameStderr:
			w = stderr
		}
		if w == nil {
			continue
		}
		if _, err := w.Write(data); err != nil {
			return fmt.Errorf("writing attached output: %w", err)
		}
	}
}
