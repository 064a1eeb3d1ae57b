//go:build !linux

package plugin

import "os/exec"

// setParentDeathSignal is a no-op outside Linux: there the plugin notices
// the host's death when its connection breaks.
func setParentDeathSignal(*exec.Cmd) {}
