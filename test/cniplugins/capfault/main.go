// Command capfault is a chained CNI plugin for the e2e tests that refuses
// capability arguments the way portmap refuses a port mapping with a
// container port of 0, as told by files in its control directory:
//
//   - fail-add-ports: ADD fails when runtimeConfig.portMappings is present;
//   - fail-del-ports: DEL fails when runtimeConfig.portMappings is present;
//   - fail-del: every DEL fails.
//
// Otherwise ADD passes the previous result through and DEL succeeds; it sets
// nothing up itself.
//
// Its configuration (in a conflist, after the plugin that allocates):
//
//	{"type": "capfault", "capabilities": {"portMappings": true}, "capfaultControl": "/tmp/dir"}
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

type netConf struct {
	CNIVersion    string          `json:"cniVersion"`
	Control       string          `json:"capfaultControl"`
	PrevResult    json.RawMessage `json:"prevResult"`
	RuntimeConfig struct {
		PortMappings []json.RawMessage `json:"portMappings"`
	} `json:"runtimeConfig"`
}

func main() {
	os.Exit(run(os.Stdin, os.Stdout, os.Getenv("CNI_COMMAND")))
}

func run(in io.Reader, out io.Writer, command string) int {
	stdin, err := io.ReadAll(in)
	if err != nil {
		return cniError(out, "", "capfault: reading stdin: "+err.Error())
	}
	if command == "VERSION" {
		_, _ = fmt.Fprint(out, `{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}`)
		return 0
	}
	var conf netConf
	if err := json.Unmarshal(stdin, &conf); err != nil {
		return cniError(out, "", "capfault: parsing config: "+err.Error())
	}
	has := func(name string) bool {
		if conf.Control == "" {
			return false
		}
		_, err := os.Stat(filepath.Join(conf.Control, name))
		return err == nil
	}
	withPorts := len(conf.RuntimeConfig.PortMappings) > 0
	switch command {
	case "ADD":
		if withPorts && has("fail-add-ports") {
			return cniError(out, conf.CNIVersion, "capfault: ADD refuses runtimeConfig.portMappings")
		}
		res := map[string]any{}
		if len(conf.PrevResult) > 0 {
			if err := json.Unmarshal(conf.PrevResult, &res); err != nil {
				return cniError(out, conf.CNIVersion, "capfault: parsing prevResult: "+err.Error())
			}
		}
		res["cniVersion"] = conf.CNIVersion
		b, _ := json.Marshal(res)
		_, _ = out.Write(b)
	case "DEL":
		if has("fail-del") {
			return cniError(out, conf.CNIVersion, "capfault: DEL fails")
		}
		if withPorts && has("fail-del-ports") {
			return cniError(out, conf.CNIVersion, "capfault: DEL refuses runtimeConfig.portMappings")
		}
	}
	return 0
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
