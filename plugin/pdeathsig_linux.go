package plugin

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal makes the kernel SIGKILL the plugin when the host
// dies (prctl PR_SET_PDEATHSIG). Caveat: Linux delivers it when the host
// *thread* that forked the plugin exits; Go keeps its threads for the
// process's life unless a goroutine exits while locked to its thread, so
// hosts must not start plugins from runtime.LockOSThread goroutines.
func setParentDeathSignal(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
