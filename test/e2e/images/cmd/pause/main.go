// Command pause is the sandbox ("infra") container of cri-containerd's test
// images: it blocks forever, reaps every child that gets re-parented to it
// (it is PID 1 of a pod's shared PID namespace) and exits 0 on SIGINT or
// SIGTERM. It is built statically (CGO_ENABLED=0) by test/e2e/images.
package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

const version = "cri-containerd-e2e-pause"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "-v" {
		fmt.Println("pause.go version:", version)
		return
	}
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "Warning: pause should be the first process")
	}

	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range sigs {
		switch sig {
		case syscall.SIGCHLD:
			reap()
		default:
			fmt.Fprintf(os.Stderr, "Shutting down, got signal: %v\n", sig)
			os.Exit(0)
		}
	}
}

// reap collects every exited child without blocking.
func reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if err == syscall.EINTR {
			continue
		}
		if pid <= 0 || err != nil {
			return
		}
	}
}
