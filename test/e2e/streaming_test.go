package e2e

// Exec, ExecSync, Attach and PortForward e2e tests. The streaming URLs are
// driven with the client-go packages kubelet and kubectl use (SPDY remote
// command and port forwarding, WebSocket remote command).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	utilexec "k8s.io/client-go/util/exec"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/cri-containerd/cri-containerd/test/e2e/framework"
)

// streamBuffer is a bytes.Buffer safe for a writer goroutine and a reader.
type streamBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *streamBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *streamBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// ctrWaitFor polls cond until it holds.
func ctrWaitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// streamWaitOutput waits until buf contains s.
func streamWaitOutput(t *testing.T, buf *streamBuffer, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(buf.String(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("output %q does not contain %q after %s", buf.String(), s, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// streamPod runs a pod with a long-running busybox container.
func streamPod(t *testing.T, e *ctrEnv, name string) (string, *runtimeapi.PodSandboxConfig, string) {
	t.Helper()
	podID, podCfg := e.runPod(name)
	id := e.run(podID, podCfg, framework.NewContainerConfig("main", framework.BusyboxImageRef, "sleep", "3600"))
	return podID, podCfg, id
}

// TestExecSync checks ExecSync: output and exit code, large output, the
// timeout, a command leaving a background child holding its output open,
// and errors for containers that do not run.
func TestExecSync(t *testing.T) {
	e := newCtrEnv(t)
	rc := e.rc()
	podID, podCfg, id := streamPod(t, e, "execsync")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	execSync := func(timeout int64, cmd ...string) (*runtimeapi.ExecSyncResponse, error) {
		return rc.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: timeout})
	}

	t.Run("output-and-exit-code", func(t *testing.T) {
		resp, err := execSync(0, "sh", "-c", "echo out; echo err >&2; exit 5")
		if err != nil {
			t.Fatalf("ExecSync: %v", err)
		}
		if string(resp.Stdout) != "out\n" || string(resp.Stderr) != "err\n" || resp.ExitCode != 5 {
			t.Errorf("ExecSync = stdout %q stderr %q exit %d, want out/err/5", resp.Stdout, resp.Stderr, resp.ExitCode)
		}
	})
	t.Run("large-output", func(t *testing.T) {
		resp, err := execSync(30, "sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' x")
		if err != nil {
			t.Fatalf("ExecSync: %v", err)
		}
		if len(resp.Stdout) != 3000000 || strings.Trim(string(resp.Stdout), "x") != "" || resp.ExitCode != 0 {
			t.Errorf("ExecSync large output: %d bytes, exit %d", len(resp.Stdout), resp.ExitCode)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		start := time.Now()
		_, err := execSync(2, "sleep", "60")
		el := time.Since(start)
		if status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("ExecSync(sleep 60, timeout 2s) = %v, want DeadlineExceeded", err)
		}
		if el < 2*time.Second || el > 20*time.Second {
			t.Errorf("ExecSync with timeout 2s returned after %s", el)
		}
		// The timed-out process was killed.
		ctrWaitFor(t, 20*time.Second, "the timed-out sleep to be killed", func() bool {
			resp, err := execSync(10, "sh", "-c", "ps -o args | grep -c '^sleep 60' || true")
			return err == nil && strings.TrimSpace(string(resp.Stdout)) == "0"
		})
	})
	t.Run("background-child", func(t *testing.T) {
		start := time.Now()
		resp, err := execSync(0, "sh", "-c", "sleep 100 & echo done")
		el := time.Since(start)
		if err != nil {
			t.Fatalf("ExecSync: %v", err)
		}
		if string(resp.Stdout) != "done\n" || resp.ExitCode != 0 {
			t.Errorf("ExecSync = stdout %q exit %d, want done/0", resp.Stdout, resp.ExitCode)
		}
		if el > 10*time.Second {
			t.Errorf("ExecSync of a command leaving a background child took %s", el)
		}
	})
	t.Run("not-running", func(t *testing.T) {
		exited := e.run(podID, podCfg, framework.NewContainerConfig("exited", framework.BusyboxImageRef, "true"))
		framework.WaitForContainerState(t, rc, exited, runtimeapi.ContainerState_CONTAINER_EXITED, 30*time.Second)
		_, err := rc.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: exited, Cmd: []string{"true"}})
		if err == nil {
			t.Error("ExecSync in an exited container succeeded")
		}
		_, err = rc.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: strings.Repeat("a", 64), Cmd: []string{"true"}})
		if status.Code(err) != codes.NotFound {
			t.Errorf("ExecSync in an unknown container = %v, want NotFound", err)
		}
		if _, err := rc.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: exited, Cmd: []string{"true"}, Stdout: true}); err == nil {
			t.Error("Exec in an exited container returned a URL")
		}
	})
}

// streamExecURL asks the daemon for an exec URL.
func streamExecURL(t *testing.T, rc runtimeapi.RuntimeServiceClient, req *runtimeapi.ExecRequest) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := rc.Exec(ctx, req)
	if err != nil {
		t.Fatalf("Exec(%q): %v", req.Cmd, err)
	}
	return resp.GetUrl()
}

// streamExitCode returns the exit code carried by a remote command error.
func streamExitCode(err error) (int, bool) {
	var ee utilexec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitStatus(), true
	}
	return 0, false
}

// TestExecStreaming runs streaming execs over SPDY as kubelet does:
// stdout/stderr, exit codes, stdin, TTY with resize; and over WebSocket.
func TestExecStreaming(t *testing.T) {
	e := newCtrEnv(t)
	rc := e.rc()
	_, _, id := streamPod(t, e, "exec")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	t.Run("stdout-stderr", func(t *testing.T) {
		u := streamExecURL(t, rc, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh", "-c", "echo out; echo err >&2"}, Stdout: true, Stderr: true})
		var out, errOut streamBuffer
		if err := framework.StreamSPDY(ctx, u, framework.StreamOptions{Stdout: &out, Stderr: &errOut}); err != nil {
			t.Fatalf("exec: %v", err)
		}
		if out.String() != "out\n" || errOut.String() != "err\n" {
			t.Errorf("stdout %q stderr %q, want out/err", out.String(), errOut.String())
		}
	})
	t.Run("exit-code", func(t *testing.T) {
		u := streamExecURL(t, rc, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh", "-c", "echo before-exit; exit 42"}, Stdout: true, Stderr: true})
		var out streamBuffer
		err := framework.StreamSPDY(ctx, u, framework.StreamOptions{Stdout: &out, Stderr: io.Discard})
		code, ok := streamExitCode(err)
		if !ok || code != 42 {
			t.Errorf("exec exit: %v (%T), want an exec.CodeExitError with code 42", err, err)
		}
		if out.String() != "before-exit\n" {
			t.Errorf("stdout %q", out.String())
		}
	})
	t.Run("url-single-use", func(t *testing.T) {
		u := streamExecURL(t, rc, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"true"}, Stdout: true})
		if err := framework.StreamSPDY(ctx, u, framework.StreamOptions{Stdout: io.Discard}); err != nil {
			t.Fatalf("exec: %v", err)
		}
		if err := framework.StreamSPDY(ctx, u, framework.StreamOptions{Stdout: io.Discard}); err == nil {
			t.Error("a used exec URL worked a second time")
		}
	})
	t.Run("stdin", func(t *testing.T) {
		u := streamExecURL(t, rc, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh", "-c", "cat; echo eof-seen"}, Stdin: true, Stdout: true, Stderr: true})
		var out streamBuffer
		in := strings.NewReader("hello-stdin\nline2\n")
		if err := framework.StreamSPDY(ctx, u, framework.StreamOptions{Stdin: in, Stdout: &out, Stderr: io.Discard}); err != nil {
			t.Fatalf("exec: %v", err)
		}
		if out.String() != "hello-stdin\nline2\neof-seen\n" {
			t.Errorf("stdout %q, want the stdin echoed then eof-seen", out.String())
		}
	})
	t.Run("large-stdin", func(t *testing.T) {
		u := streamExecURL(t, rc, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"wc", "-c"}, Stdin: true, Stdout: true, Stderr: true})
		var out streamBuffer
		in := strings.NewReader(strings.Repeat("0123456789", 300000))
		if err := framework.StreamSPDY(ctx, u, framework.StreamOptions{Stdin: in, Stdout: &out, Stderr: io.Discard}); err != nil {
			t.Fatalf("exec: %v", err)
		}
		if strings.TrimSpace(out.String()) != "3000000" {
			t.Errorf("wc -c of 3000000 bytes of stdin = %q", out.String())
		}
	})
	t.Run("tty-without-stdin", func(t *testing.T) {
		// kubectl exec -t without -i.
		u := streamExecURL(t, rc, &runtimeapi.ExecRequest{ContainerId: id, Tty: true, Stdout: true, Cmd: []string{"sh", "-c", "tty; echo no-stdin"}})
		var out streamBuffer
		if err := framework.StreamSPDY(ctx, u, framework.StreamOptions{Stdout: &out, Tty: true}); err != nil {
			t.Fatalf("exec: %v", err)
		}
		if !strings.Contains(out.String(), "/dev/pts/") || !strings.Contains(out.String(), "no-stdin\r\n") {
			t.Errorf("tty exec without stdin: output %q", out.String())
		}
	})
	t.Run("tty-resize", func(t *testing.T) {
		u := streamExecURL(t, rc, &runtimeapi.ExecRequest{ContainerId: id, Tty: true, Stdin: true, Stdout: true,
			Cmd: []string{"sh", "-c", `stty size; while read line; do [ "$line" = quit ] && exit 7; stty size; done`}})
		sctx, scancel := context.WithCancel(ctx)
		defer scancel()
		sizes := framework.NewSizeQueue(sctx)
		sizes.C <- framework.TerminalSize{Width: 100, Height: 30}
		inR, inW := io.Pipe()
		defer inW.Close()
		var out streamBuffer
		errCh := make(chan error, 1)
		go func() {
			errCh <- framework.StreamSPDY(sctx, u, framework.StreamOptions{Stdin: inR, Stdout: &out, Tty: true, TerminalSizeQueue: sizes})
		}()
		streamWaitOutput(t, &out, "30 100", 30*time.Second)
		sizes.C <- framework.TerminalSize{Width: 120, Height: 40}
		// The resize is applied asynchronously: ask again until it shows.
		deadline := time.Now().Add(20 * time.Second)
		for !strings.Contains(out.String(), "40 120") {
			if time.Now().After(deadline) {
				t.Fatalf("resize not seen: output %q", out.String())
			}
			if _, err := io.WriteString(inW, "\n"); err != nil {
				t.Fatalf("writing stdin: %v", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if _, err := io.WriteString(inW, "quit\n"); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errCh:
			if code, ok := streamExitCode(err); !ok || code != 7 {
				t.Errorf("tty exec ended with %v, want exit code 7", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("tty exec did not end; output %q", out.String())
		}
		if strings.Contains(out.String(), "\n") && !strings.Contains(out.String(), "\r\n") {
			t.Errorf("tty output has no CRLF line endings: %q", out.String())
		}
	})
	t.Run("websocket-v4", func(t *testing.T) {
		u := streamExecURL(t, rc, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh", "-c", "echo ws-out; echo ws-err >&2; exit 3"}, Stdout: true, Stderr: true})
		var out, errOut streamBuffer
		err := framework.StreamWebSocket(ctx, u, framework.StreamOptions{Stdout: &out, Stderr: &errOut}, "v4.channel.k8s.io")
		if code, ok := streamExitCode(err); !ok || code != 3 {
			t.Errorf("websocket exec ended with %v, want exit code 3", err)
		}
		if out.String() != "ws-out\n" || errOut.String() != "ws-err\n" {
			t.Errorf("websocket exec: stdout %q stderr %q", out.String(), errOut.String())
		}
	})
}

// streamAttachURL asks the daemon for an attach URL.
func streamAttachURL(t *testing.T, rc runtimeapi.RuntimeServiceClient, req *runtimeapi.AttachRequest) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := rc.Attach(ctx, req)
	if err != nil {
		t.Fatalf("Attach(%s): %v", req.ContainerId, err)
	}
	return resp.GetUrl()
}

// streamAttachSession is a running SPDY attach.
type streamAttachSession struct {
	stdin       *io.PipeWriter
	out, errOut *streamBuffer
	cancel      context.CancelFunc
	done        chan error
}

func streamStartAttach(t *testing.T, rc runtimeapi.RuntimeServiceClient, id string, tty bool) *streamAttachSession {
	t.Helper()
	u := streamAttachURL(t, rc, &runtimeapi.AttachRequest{ContainerId: id, Stdin: true, Stdout: true, Stderr: !tty, Tty: tty})
	ctx, cancel := context.WithCancel(context.Background())
	inR, inW := io.Pipe()
	s := &streamAttachSession{stdin: inW, out: &streamBuffer{}, errOut: &streamBuffer{}, cancel: cancel, done: make(chan error, 1)}
	opts := framework.StreamOptions{Stdin: inR, Stdout: s.out, Tty: tty}
	if tty {
		q := framework.NewSizeQueue(ctx)
		q.C <- framework.TerminalSize{Width: 80, Height: 24}
		opts.TerminalSizeQueue = q
	} else {
		opts.Stderr = s.errOut
	}
	go func() { s.done <- framework.StreamSPDY(ctx, u, opts) }()
	t.Cleanup(s.detach)
	return s
}

func (s *streamAttachSession) send(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(s.stdin, line); err != nil {
		t.Fatalf("writing to the attached stdin: %v", err)
	}
}

// detach ends the client side of the session.
func (s *streamAttachSession) detach() {
	s.cancel()
	_ = s.stdin.Close()
}

func (s *streamAttachSession) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case err := <-s.done:
		return err
	case <-time.After(timeout):
		t.Fatalf("attach session did not end within %s", timeout)
		return nil
	}
}

// TestAttach attaches to containers reading commands from stdin, with and
// without a TTY, as kubectl attach -i does.
func TestAttach(t *testing.T) {
	e := newCtrEnv(t)
	rc := e.rc()
	podID, podCfg := e.runPod("attach")

	t.Run("stdin", func(t *testing.T) {
		cfg := framework.NewContainerConfig("sh-stdin", framework.BusyboxImageRef, "sh")
		cfg.Stdin = true
		id := e.run(podID, podCfg, cfg)
		framework.WaitForContainerState(t, rc, id, runtimeapi.ContainerState_CONTAINER_RUNNING, 10*time.Second)

		s := streamStartAttach(t, rc, id, false)
		s.send(t, "echo attached-$((40+2))\n")
		streamWaitOutput(t, s.out, "attached-42\n", 30*time.Second)
		s.send(t, "echo to-stderr >&2\n")
		streamWaitOutput(t, s.errOut, "to-stderr\n", 30*time.Second)
		s.detach()
		_ = s.wait(t, 30*time.Second)
		// Detaching leaves the container running, its stdin open.
		if st := framework.ContainerStatusOrFail(t, rc, id); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Fatalf("after detaching: state %s", st.State)
		}
		s2 := streamStartAttach(t, rc, id, false)
		s2.send(t, "echo second-session\n")
		streamWaitOutput(t, s2.out, "second-session\n", 30*time.Second)
		if strings.Contains(s2.out.String(), "attached-42") {
			t.Errorf("second session replayed earlier output: %q", s2.out.String())
		}
		// Exiting the shell ends the output: the session ends by itself.
		s2.send(t, "exit 9\n")
		if err := s2.wait(t, 30*time.Second); err != nil {
			t.Logf("attach ended with %v", err)
		}
		st := framework.WaitForContainerState(t, rc, id, runtimeapi.ContainerState_CONTAINER_EXITED, 30*time.Second)
		if st.ExitCode != 9 {
			t.Errorf("exit code %d, want 9", st.ExitCode)
		}
		lines := framework.CRILogLines(framework.ReadCRILog(t, ctrLogPath(podCfg, cfg)), "")
		for _, want := range []string{"attached-42", "to-stderr", "second-session"} {
			if !slices.Contains(lines, want) {
				t.Errorf("container log %q lacks %q", lines, want)
			}
		}
		// Attach to an exited container is refused.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := rc.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: id, Stdout: true}); err == nil {
			t.Error("Attach to an exited container returned a URL")
		}
	})
	t.Run("stdin-once", func(t *testing.T) {
		// kubectl run -i: the end of the client's stdin closes the
		// container's stdin.
		cfg := framework.NewContainerConfig("cat-once", framework.BusyboxImageRef, ctrSh("echo ready; cat; echo cat-done")...)
		cfg.Stdin, cfg.StdinOnce = true, true
		id := e.run(podID, podCfg, cfg)
		ctrWaitLogLine(t, ctrLogPath(podCfg, cfg), "stdout", "ready", 30*time.Second)
		u := streamAttachURL(t, rc, &runtimeapi.AttachRequest{ContainerId: id, Stdin: true, Stdout: true, Stderr: true})
		var out streamBuffer
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err := framework.StreamSPDY(ctx, u, framework.StreamOptions{Stdin: strings.NewReader("data-1\ndata-2\n"), Stdout: &out, Stderr: io.Discard})
		if err != nil {
			t.Logf("attach ended with %v", err)
		}
		st := framework.WaitForContainerState(t, rc, id, runtimeapi.ContainerState_CONTAINER_EXITED, 30*time.Second)
		if st.ExitCode != 0 {
			t.Errorf("exit code %d, want 0", st.ExitCode)
		}
		if !strings.Contains(out.String(), "data-1\ndata-2\ncat-done\n") {
			t.Errorf("attached output %q, want the stdin echoed then cat-done", out.String())
		}
	})
	t.Run("tty", func(t *testing.T) {
		cfg := framework.NewContainerConfig("sh-tty", framework.BusyboxImageRef, "sh")
		cfg.Stdin, cfg.Tty = true, true
		id := e.run(podID, podCfg, cfg)
		framework.WaitForContainerState(t, rc, id, runtimeapi.ContainerState_CONTAINER_RUNNING, 10*time.Second)
		s := streamStartAttach(t, rc, id, true)
		s.send(t, "echo tty-$((6*7))\n")
		streamWaitOutput(t, s.out, "tty-42\r\n", 30*time.Second)
		s.send(t, "stty size\n")
		streamWaitOutput(t, s.out, "24 80", 30*time.Second)
		s.detach()
		_ = s.wait(t, 30*time.Second)
		if st := framework.ContainerStatusOrFail(t, rc, id); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
			t.Errorf("after detaching from the TTY: state %s", st.State)
		}
		// TTY output is logged as stdout, without the terminal's CR.
		recs := framework.ReadCRILog(t, ctrLogPath(podCfg, cfg))
		if lines := framework.CRILogLines(recs, "stdout"); !slices.Contains(lines, "tty-42") {
			t.Errorf("TTY container log lines %q, want tty-42 (without CR)", lines)
		}
		for _, r := range recs {
			if r.Stream != "stdout" {
				t.Errorf("TTY container log record on %s: %+v", r.Stream, r)
			}
		}
	})
}

// TestPortForward forwards local ports into a pod's network namespace
// through the PortForward URL with the SPDY port-forward protocol kubectl
// uses, to an HTTP server and to an nc listener in the pod.
func TestPortForward(t *testing.T) {
	e := newCtrEnv(t)
	rc := e.rc()
	podID, podCfg := e.runPod("portforward")
	httpd := framework.NewContainerConfig("httpd", framework.BusyboxImageRef,
		ctrSh("mkdir -p /www && echo pf-ok > /www/index.html && exec httpd -f -p 8080 -h /www")...)
	hid := e.run(podID, podCfg, httpd)
	nc := framework.NewContainerConfig("nc", framework.BusyboxImageRef, ctrSh("exec nc -ll -p 9090 -e echo hi")...)
	e.run(podID, podCfg, nc)
	// Wait for the listeners, from inside the pod.
	ctrWaitFor(t, 30*time.Second, "httpd in the pod", func() bool {
		out, _, code := framework.ExecSyncOrFail(t, rc, hid, 10*time.Second, "wget", "-q", "-O-", "http://127.0.0.1:8080/")
		return code == 0 && out == "pf-ok\n"
	})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pfURL := func(ports ...int32) string {
		resp, err := rc.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: podID, Port: ports})
		if err != nil {
			t.Fatalf("PortForward(%v): %v", ports, err)
		}
		return resp.GetUrl()
	}

	t.Run("http", func(t *testing.T) {
		pf := framework.StartPortForward(t, pfURL(8080), 8080, nil, nil)
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 30 * time.Second}
		for i := 0; i < 3; i++ { // each request is a new forwarded connection
			resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/", pf.LocalPort))
			if err != nil {
				t.Fatalf("GET through the port forward (#%d): %v", i, err)
			}
			body, _ := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "pf-ok\n" {
				t.Errorf("GET #%d: %d %q, want 200 pf-ok", i, resp.StatusCode, body)
			}
		}
		if err := pf.Stop(); err != nil {
			t.Logf("port forwarder ended with %v", err)
		}
	})
	t.Run("nc", func(t *testing.T) {
		// Busybox 1.35 nc: -ll with -e is a persistent server.
		ctrWaitFor(t, 30*time.Second, "nc in the pod", func() bool {
			out, _, code := framework.ExecSyncOrFail(t, rc, hid, 10*time.Second, "sh", "-c", "nc 127.0.0.1 9090 </dev/null")
			return code == 0 && out == "hi\n"
		})
		pf := framework.StartPortForward(t, pfURL(9090), 9090, nil, nil)
		for i := 0; i < 2; i++ {
			conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", pf.LocalPort), 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
			b, err := io.ReadAll(conn)
			_ = conn.Close()
			if string(b) != "hi\n" {
				t.Errorf("read through the port forward (#%d): %q, %v; want hi", i, b, err)
			}
		}
	})
	t.Run("errors", func(t *testing.T) {
		if _, err := rc.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: strings.Repeat("b", 64), Port: []int32{80}}); status.Code(err) != codes.NotFound {
			t.Errorf("PortForward to an unknown pod: %v, want NotFound", err)
		}
		if _, err := rc.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: podID, Port: []int32{70000}}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("PortForward to port 70000: %v, want InvalidArgument", err)
		}
		// Nothing listens on 8081: the forwarded connection ends at once,
		// without data, and the forwarder keeps serving.
		var errOut streamBuffer
		pf := framework.StartPortForward(t, pfURL(8081), 8081, nil, &errOut)
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", pf.LocalPort), 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = conn.SetDeadline(time.Now().Add(20 * time.Second))
		start := time.Now()
		b, err := io.ReadAll(conn)
		_ = conn.Close()
		if len(b) != 0 || time.Since(start) > 15*time.Second {
			t.Errorf("connection forwarded to a closed port: read %q, %v after %s", b, err, time.Since(start))
		}
		t.Logf("forward to a closed port: client error output %q", errOut.String())
	})
}
