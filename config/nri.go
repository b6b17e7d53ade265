package config

import (
	"errors"
	"time"
)

// NRI configures the Node Resource Interface host (package nri): plugins
// that connect to SocketPath, or that the daemon starts from PluginPath,
// see every pod and container lifecycle event and may adjust containers.
type NRI struct {
	// Disable turns NRI off: no socket, no plugins, no events.
	Disable bool `toml:"disable" json:"disable"`
	// SocketPath is the unix socket external plugins connect to.
	SocketPath string `toml:"socket_path" json:"socketPath"`
	// PluginPath holds plugins the daemon starts itself ("NN-name" executables).
	PluginPath string `toml:"plugin_path" json:"pluginPath"`
	// PluginConfigPath holds the configuration of those plugins.
	PluginConfigPath string `toml:"plugin_config_path" json:"pluginConfigPath"`
	// PluginRegistrationTimeout bounds a plugin's registration; a plugin
	// that does not register in time is disconnected.
	PluginRegistrationTimeout Duration `toml:"plugin_registration_timeout" json:"pluginRegistrationTimeout"`
	// PluginRequestTimeout bounds a plugin's answer to one event; a plugin
	// that does not answer in time is disconnected and the event goes on
	// without it.
	PluginRequestTimeout Duration `toml:"plugin_request_timeout" json:"pluginRequestTimeout"`
	// DisableConnections refuses external plugins (only PluginPath's run).
	DisableConnections bool `toml:"disable_connections" json:"disableConnections"`
}

// DefaultNRI returns NRI's defaults (those of containerd).
func DefaultNRI() NRI {
	return NRI{
		SocketPath:                "/var/run/nri/nri.sock",
		PluginPath:                "/opt/nri/plugins",
		PluginConfigPath:          "/etc/nri/conf.d",
		PluginRegistrationTimeout: Duration{5 * time.Second},
		PluginRequestTimeout:      Duration{2 * time.Second},
	}
}

// Validate checks the NRI settings.
func (n NRI) Validate() error {
	if n.Disable {
		return nil
	}
	var errs []error
	if n.SocketPath == "" && !n.DisableConnections {
		errs = append(errs, errors.New("nri.socket_path must not be empty unless nri.disable or nri.disable_connections"))
	}
	if n.PluginRegistrationTimeout.Duration < 0 || n.PluginRequestTimeout.Duration < 0 {
		errs = append(errs, errors.New("nri.plugin_registration_timeout and nri.plugin_request_timeout must not be negative"))
	}
	return errors.Join(errs...)
}
