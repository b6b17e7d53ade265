// Command cnifault is a CNI plugin that wraps another plugin and injects
// faults for the chaos campaign (test/chaos): on ADD or DEL it can fail, fail
// after the real plugin succeeded, or hang (past the caller's deadline), as
// told by a small JSON control file that the campaign rewrites at run time.
//
// Its network config carries two extra keys, ignored by the real plugin:
//
//	"type": "cnifault",
//	"chaosDelegate": "/opt/cni/bin/bridge",     // the real plugin
//	"chaosControl": "/run/cri-chaos/cnifault.json"
//
// The control file holds one Rule per CNI command:
//
//	{"ADD": {"mode": "fail", "count": 2}, "DEL": {"mode": "hang", "count": 1, "hangSeconds": 60}}
//
// Each call that matches a rule with count > 0 applies it and decrements the
// count (under an flock on the file, so concurrent calls take one each) and
// appends one line to <control>.log. Everything else execs the delegate with
// the same stdin, arguments and environment.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Rule is the fault for one CNI command.
type Rule struct {
	// Mode: "fail" (error before the delegate runs), "failafter" (run the
	// delegate, then report an error anyway), "hang" (sleep HangSeconds, then
	// fail; the caller's deadline is expected to kill us first).
	Mode        string `json:"mode"`
	Count       int    `json:"count"`
	HangSeconds int    `json:"hangSeconds,omitempty"`
}

// Control is the control file's content: CNI command -> rule.
type Control map[string]*Rule

type netConf struct {
	CNIVersion string `json:"cniVersion"`
	Delegate   string `json:"chaosDelegate"`
	Control    string `json:"chaosControl"`
}

func main() {
	os.Exit(run(os.Stdin, os.Stdout, os.Getenv("CNI_COMMAND")))
}

func run(in io.Reader, out io.Writer, command string) int {
	stdin, err := io.ReadAll(in)
	if err != nil {
		return cniError(out, "", fmt.Sprintf("cnifault: reading stdin: %v", err))
	}
	if command == "VERSION" {
		_, _ = fmt.Fprint(out, `{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}`)
		return 0
	}
	var conf netConf
	if err := json.Unmarshal(stdin, &conf); err != nil {
		return cniError(out, "", fmt.Sprintf("cnifault: parsing config: %v", err))
	}
	if conf.Delegate == "" {
		return cniError(out, conf.CNIVersion, "cnifault: no chaosDelegate in the network config")
	}
	var rule *Rule
	if conf.Control != "" {
		rule, err = take(conf.Control, command)
		if err != nil {
			return cniError(out, conf.CNIVersion, fmt.Sprintf("cnifault: control file: %v", err))
		}
	}
	if rule != nil {
		switch rule.Mode {
		case "fail":
			return cniError(out, conf.CNIVersion, fmt.Sprintf("cnifault: injected %s failure", command))
		case "hang":
			time.Sleep(time.Duration(rule.HangSeconds) * time.Second)
			return cniError(out, conf.CNIVersion, fmt.Sprintf("cnifault: injected %s hang of %ds", command, rule.HangSeconds))
		}
	}
	cmd := exec.Command(conf.Delegate, os.Args[1:]...)
	cmd.Stdin = bytes.NewReader(stdin)
	var stdout bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, os.Stderr
	runErr := cmd.Run()
	if rule != nil && rule.Mode == "failafter" {
		return cniError(out, conf.CNIVersion, fmt.Sprintf("cnifault: injected %s failure after the delegate (delegate: %v)", command, runErr))
	}
	_, _ = out.Write(stdout.Bytes())
	if runErr != nil {
		if ee, ok := runErr.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		return cniError(out, conf.CNIVersion, fmt.Sprintf("cnifault: running %s: %v", conf.Delegate, runErr))
	}
	return 0
}

// take returns the rule for command when one is armed, consuming one count.
func take(path, command string) (*Rule, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	ctl := Control{}
	if len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, &ctl); err != nil {
			return nil, err
		}
	}
	r := ctl[command]
	if r == nil || r.Count <= 0 || r.Mode == "" {
		return nil, nil
	}
	applied := *r
	r.Count--
	data, err = json.Marshal(ctl)
	if err != nil {
		return nil, err
	}
	if err := f.Truncate(0); err != nil {
		return nil, err
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		return nil, err
	}
	if lf, err := os.OpenFile(path+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err == nil {
		_, _ = fmt.Fprintf(lf, "%s %s %s %s\n", time.Now().UTC().Format(time.RFC3339Nano), command, applied.Mode, os.Getenv("CNI_CONTAINERID"))
		_ = lf.Close()
	}
	return &applied, nil
}

// cniError writes a CNI error result and returns the exit code.
func cniError(out io.Writer, version, msg string) int {
	if version == "" {
		version = "1.0.0"
	}
	b, _ := json.Marshal(map[string]any{"cniVersion": version, "code": 999, "msg": msg})
	_, _ = out.Write(b)
	return 1
}
