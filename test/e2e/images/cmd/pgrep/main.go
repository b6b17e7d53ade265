// Command pgrep is a small stand-in for procps pgrep(1) in the busybox test
// image (Debian's busybox has no pgrep applet). It matches the extended
// regular expression PATTERN against each process name (/proc/PID/comm), or
// with -f against the full command line, and prints the matching PIDs. It
// never matches itself. Exit status: 0 if something matched, 1 if nothing
// did, 2 on a usage error.
//
// Options: -f (full command line), -x (exact match), -l (print name too),
// -a (print full command line too), -n (newest only), -o (oldest only),
// -c (print count), -d DELIM (output delimiter).
package main

import (
	"fmt"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

func usage() {
	fmt.Fprintln(os.Stderr, "usage: pgrep [-flaxnoc] [-d delim] PATTERN")
	os.Exit(2)
}

func main() {
	var full, exact, listName, listFull, newest, oldest, count bool
	delim := "\n"
	var pattern *string
	args := os.Args[1:]
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			if i+1 < len(args) {
				pattern = &args[i+1]
			}
			break
		}
		if len(a) > 1 && a[0] == '-' {
			for j := 1; j < len(a); j++ {
				switch a[j] {
				case 'f':
					full = true
				case 'x':
					exact = true
				case 'l':
					listName = true
				case 'a':
					listFull = true
				case 'n':
					newest = true
				case 'o':
					oldest = true
				case 'c':
					count = true
				case 'd':
					if j+1 < len(a) {
						delim = a[j+1:]
					} else if i+1 < len(args) {
						i++
						delim = args[i]
					} else {
						usage()
					}
					j = len(a)
				default:
					usage()
				}
			}
			continue
		}
		if pattern != nil {
			usage()
		}
		pattern = &args[i]
	}
	if pattern == nil {
		usage()
	}
	expr := *pattern
	if exact {
		expr = "^(?:" + expr + ")$"
	}
	re, err := regexp.Compile(expr)
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgrep: invalid pattern: %v\n", err)
		os.Exit(2)
	}

	type proc struct {
		pid       int
		comm, cmd string
	}
	var found []proc
	self := os.Getpid()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgrep: %v\n", err)
		os.Exit(3)
	}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		comm, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err != nil {
			continue // the process exited meanwhile
		}
		raw, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		cmd := strings.TrimRight(strings.ReplaceAll(string(raw), "\x00", " "), " ")
		p := proc{pid: pid, comm: strings.TrimSuffix(string(comm), "\n"), cmd: cmd}
		subject := p.comm
		if full && cmd != "" {
			subject = cmd
		}
		if re.MatchString(subject) {
			found = append(found, p)
		}
	}
	sort.Slice(found, func(i, j int) bool { return found[i].pid < found[j].pid })
	if len(found) > 0 && (newest || oldest) {
		// Approximation: PIDs grow over time, so the highest is the newest.
		if newest {
			found = found[len(found)-1:]
		} else {
			found = found[:1]
		}
	}
	if count {
		fmt.Println(len(found))
	} else {
		out := make([]string, 0, len(found))
		for _, p := range found {
			s := strconv.Itoa(p.pid)
			switch {
			case listFull && p.cmd != "":
				s += " " + p.cmd
			case listFull || listName:
				s += " " + p.comm
			}
			out = append(out, s)
		}
		if len(out) > 0 {
			fmt.Print(strings.Join(out, delim) + "\n")
		}
	}
	if len(found) == 0 {
		os.Exit(1)
	}
}
