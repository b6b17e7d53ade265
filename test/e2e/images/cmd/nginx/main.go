// Command nginx is a tiny static web server that stands in for nginx in the
// e2e test images (registry.k8s.io/e2e-test-images/nginx and the cri-tools
// hostnet-nginx image). It behaves like nginx where the CRI validation specs
// look:
//
//   - it is installed as /usr/sbin/nginx, so its comm is "nginx" (pidof);
//   - on start it re-execs itself (same PID) with argv[0]
//     "nginx: master process /usr/sbin/nginx ...", so /proc/PID/cmdline
//     contains "master process";
//   - it writes its PID to /var/run/nginx.pid;
//   - it serves the files under the first `root` of /etc/nginx/nginx.conf and
//     /etc/nginx/conf.d/*.conf (default /usr/share/nginx/html) on every
//     `listen` port found there (default 80), logging one access line per
//     request to stdout;
//   - SIGTERM/SIGINT/SIGQUIT stop it with exit status 0.
//
// Only `listen N;` and `root DIR;` lines of the configuration are honoured;
// `-g "daemon off;"` and the other nginx flags are accepted and ignored.
package main

import (
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"
)

const (
	confPath    = "/etc/nginx/nginx.conf"
	confDGlob   = "/etc/nginx/conf.d/*.conf"
	pidPath     = "/var/run/nginx.pid"
	defaultRoot = "/usr/share/nginx/html"
	titlePrefix = "nginx: master process"
)

func main() {
	if !strings.HasPrefix(os.Args[0], titlePrefix) {
		// Re-exec ourselves with the nginx master process title. exec keeps
		// the PID, so this is still the container's init when run as one.
		self, err := os.Executable()
		if err != nil {
			self = "/usr/sbin/nginx"
		}
		argv := append([]string{titlePrefix + " " + self}, os.Args[1:]...)
		if err := syscall.Exec(self, argv, os.Environ()); err != nil {
			log.Printf("nginx: re-exec failed (%v); continuing without process title", err)
		}
	}
	for _, a := range os.Args[1:] {
		if a == "-v" || a == "-V" {
			fmt.Fprintln(os.Stderr, "nginx version: nginx/1.14.2 (cri-containerd e2e stand-in)")
			return
		}
		if a == "-t" {
			fmt.Fprintln(os.Stderr, "nginx: configuration file "+confPath+" test is successful")
			return
		}
	}

	ports, root := readConf()
	logger := log.New(os.Stdout, "", 0)
	handler := http.FileServer(http.Dir(root))
	srvHandler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Server", "nginx/1.14.2")
		handler.ServeHTTP(w, r)
		logger.Printf("%s - - [%s] \"%s %s %s\" - \"%s\"", r.RemoteAddr,
			time.Now().Format("02/Jan/2006:15:04:05 -0700"), r.Method, r.URL.RequestURI(), r.Proto, r.UserAgent())
	})

	errs := make(chan error, len(ports))
	for _, p := range ports {
		ln, err := net.Listen("tcp", ":"+p)
		if err != nil {
			fmt.Fprintf(os.Stderr, "nginx: [emerg] bind() to 0.0.0.0:%s failed (%v)\n", p, err)
			os.Exit(1)
		}
		go func() { errs <- http.Serve(ln, srvHandler) }()
	}
	if err := os.WriteFile(pidPath, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "nginx: [alert] could not write pid file %s: %v\n", pidPath, err)
	}
	fmt.Fprintf(os.Stderr, "nginx: serving %s on port(s) %s\n", root, strings.Join(ports, ","))

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGQUIT)
	select {
	case <-sigs:
		os.Remove(pidPath)
		os.Exit(0)
	case err := <-errs:
		fmt.Fprintf(os.Stderr, "nginx: %v\n", err)
		os.Exit(1)
	}
}

var (
	listenRE = regexp.MustCompile(`(?m)^\s*listen\s+(?:[^;\s]*:)?(\d+)[^;]*;`)
	rootRE   = regexp.MustCompile(`(?m)^\s*root\s+([^;\s]+)\s*;`)
)

func readConf() (ports []string, root string) {
	root = defaultRoot
	files := []string{confPath}
	more, _ := filepath.Glob(confDGlob)
	files = append(files, more...)
	var b []byte
	for _, f := range files {
		c, err := os.ReadFile(f)
		if err == nil {
			b = append(append(b, c...), '\n')
		}
	}
	seen := map[string]bool{}
	for _, m := range listenRE.FindAllStringSubmatch(string(b), -1) {
		if !seen[m[1]] {
			seen[m[1]] = true
			ports = append(ports, m[1])
		}
	}
	if m := rootRE.FindStringSubmatch(string(b)); m != nil {
		root = m[1]
	}
	if len(ports) == 0 {
		ports = []string{"80"}
	}
	return ports, root
}
