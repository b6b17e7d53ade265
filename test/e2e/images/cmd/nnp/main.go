// Command nnp mirrors Kubernetes' test/images/nonewprivs/nnp.c: installed
// setuid root (mode 4755) it prints the effective uid it runs with, which is 0
// unless no_new_privs stopped the setuid bit from taking effect.
package main

import (
	"fmt"
	"syscall"
)

func main() {
	fmt.Printf("Effective uid: %d\n", syscall.Geteuid())
}
