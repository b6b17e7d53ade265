// Command ipcs is a small stand-in for util-linux ipcs(1) in the busybox test
// image (Debian's busybox has no ipcs applet). It reads /proc/sysvipc and
// prints the System V IPC objects of the caller's IPC namespace in the same
// layout as util-linux: `ipcs -m` (shared memory), `-q` (message queues),
// `-s` (semaphores); no option or `-a` prints all three.
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

type table struct {
	file   string
	title  string
	header []string
	// row formats one record (a map from /proc/sysvipc column name to value).
	row func(r map[string]string) []string
}

var tables = map[byte]table{
	'm': {
		file:   "/proc/sysvipc/shm",
		title:  "Shared Memory Segments",
		header: []string{"key", "shmid", "owner", "perms", "bytes", "nattch", "status"},
		row: func(r map[string]string) []string {
			perms, _ := strconv.ParseUint(r["perms"], 8, 32)
			status := ""
			if perms&01000 != 0 {
				status += "dest "
			}
			if perms&02000 != 0 {
				status += "locked "
			}
			return []string{hexKey(r["key"]), r["shmid"], owner(r["uid"]), fmt.Sprintf("%o", perms&0777), r["size"], r["nattch"], strings.TrimSpace(status)}
		},
	},
	'q': {
		file:   "/proc/sysvipc/msg",
		title:  "Message Queues",
		header: []string{"key", "msqid", "owner", "perms", "used-bytes", "messages"},
		row: func(r map[string]string) []string {
			perms, _ := strconv.ParseUint(r["perms"], 8, 32)
			return []string{hexKey(r["key"]), r["msqid"], owner(r["uid"]), fmt.Sprintf("%o", perms&0777), r["cbytes"], r["qnum"]}
		},
	},
	's': {
		file:   "/proc/sysvipc/sem",
		title:  "Semaphore Arrays",
		header: []string{"key", "semid", "owner", "perms", "nsems"},
		row: func(r map[string]string) []string {
			perms, _ := strconv.ParseUint(r["perms"], 8, 32)
			return []string{hexKey(r["key"]), r["semid"], owner(r["uid"]), fmt.Sprintf("%o", perms&0777), r["nsems"]}
		},
	},
}

func main() {
	var which []byte
	for _, a := range os.Args[1:] {
		switch a {
		case "-m", "--shmems":
			which = append(which, 'm')
		case "-q", "--queues":
			which = append(which, 'q')
		case "-s", "--semaphores":
			which = append(which, 's')
		case "-a", "--all":
			which = append(which, 'm', 'q', 's')
		case "-h", "--help":
			fmt.Println("usage: ipcs [-m|-q|-s|-a]")
			return
		default:
			fmt.Fprintf(os.Stderr, "ipcs: unsupported option %q\n", a)
			os.Exit(1)
		}
	}
	if len(which) == 0 {
		which = []byte{'q', 'm', 's'}
	}
	status := 0
	for _, w := range which {
		if err := printTable(tables[w]); err != nil {
			fmt.Fprintf(os.Stderr, "ipcs: %v\n", err)
			status = 1
		}
	}
	os.Exit(status)
}

func printTable(t table) error {
	f, err := os.Open(t.file)
	if err != nil {
		return err
	}
	defer f.Close()
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	fmt.Fprintf(out, "\n------ %s --------\n", t.title)
	writeRow(out, t.header)
	sc := bufio.NewScanner(f)
	var cols []string
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if cols == nil {
			cols = fields
			continue
		}
		r := make(map[string]string, len(cols))
		for i, c := range cols {
			if i < len(fields) {
				r[c] = fields[i]
			}
		}
		writeRow(out, t.row(r))
	}
	fmt.Fprintln(out)
	return sc.Err()
}

func writeRow(out *bufio.Writer, cells []string) {
	for _, c := range cells {
		fmt.Fprintf(out, "%-10s ", c)
	}
	fmt.Fprintln(out)
}

func hexKey(s string) string {
	k, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return s
	}
	return fmt.Sprintf("0x%08x", uint32(k))
}

var users map[string]string

// owner maps a uid to a name from /etc/passwd, falling back to the number.
func owner(uid string) string {
	if users == nil {
		users = map[string]string{}
		if b, err := os.ReadFile("/etc/passwd"); err == nil {
			for _, l := range strings.Split(string(b), "\n") {
				f := strings.Split(l, ":")
				if len(f) > 2 {
					if _, ok := users[f[2]]; !ok {
						users[f[2]] = f[0]
					}
				}
			}
		}
	}
	if n, ok := users[uid]; ok {
		return n
	}
	return uid
}
