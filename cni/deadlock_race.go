//go:build race

package cni

import "github.com/sasha-s/go-deadlock"

// go-cni swaps its sync.RWMutex for go-deadlock's under the race build tag.
// go-deadlock cannot tell goroutines apart on current Go releases (it reports
// every goroutine as 0), so two concurrent CNI ADDs look like recursive
// locking and it exits the whole daemon ("POTENTIAL DEADLOCK"). The race
// detector is what we run -race builds for; switch the false alarm off.
func init() { deadlock.Opts.Disable = true }
