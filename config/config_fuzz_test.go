package config

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// FuzzLoadFile feeds arbitrary TOML to LoadFile over the defaults. Nothing
// may panic; a file that loads and validates must encode, and the encoding
// must load back to the same configuration.
//
//	go test -run '^$' -fuzz FuzzLoadFile -fuzztime 30s ./config/
func FuzzLoadFile(f *testing.F) {
	def, err := Encode(Default())
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{
		string(def),
		"",
		"socket_path = \"/run/x.sock\"\n",
		"[runtimes.kata]\nruntime_type = \"io.containerd.kata.v2\"\nsnapshotter = \"devmapper\"\n",
		"stream_idle_timeout = \"1h30m\"\nshutdown_timeout = \"-1s\"\n",
		"recovery_concurrency = -3\nmax_concurrent_downloads = 0\n",
		"unknown_key = 1\n",
		"[runtimes]\nrunc = 1\n",
		"cgroup_driver = \"systemd\"\nrestrict_oom_score_adj = \"maybe\"\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		p := filepath.Join(dir, "c.toml")
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg := Default()
		if err := LoadFile(p, &cfg, false); err != nil {
			return
		}
		if err := cfg.Validate(); err != nil {
			return
		}
		out, err := Encode(cfg)
		if err != nil {
			t.Fatalf("a valid config does not encode: %v\n%+v", err, cfg)
		}
		p2 := filepath.Join(dir, "c2.toml")
		if err := os.WriteFile(p2, out, 0o644); err != nil {
			t.Fatal(err)
		}
		back := Default()
		if err := LoadFile(p2, &back, false); err != nil {
			t.Fatalf("encoded config does not load back: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(normalize(cfg), normalize(back)) {
			t.Fatalf("round trip changed the config:\n got %+v\nwant %+v\n%s", back, cfg, out)
		}
	})
}

// normalize maps empty and nil collections to one form (TOML cannot tell them apart).
func normalize(c Config) Config {
	v := reflect.ValueOf(&c).Elem()
	for i := 0; i < v.NumField(); i++ {
		fv := v.Field(i)
		if (fv.Kind() == reflect.Slice || fv.Kind() == reflect.Map) && fv.Len() == 0 && fv.CanSet() {
			fv.Set(reflect.Zero(fv.Type()))
		}
	}
	return c
}
