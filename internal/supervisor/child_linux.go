package supervisor

import (
	"os/exec"
	"runtime"
	"syscall"
)

// runChild runs cmd, a child that must not outlive this process: the kernel sends it SIGTERM
// when the thread that started it ends, which is when the process dies, even by SIGKILL. The
// thread is held until the child exits, so that the Go runtime does not end it earlier.
func runChild(cmd *exec.Cmd) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGTERM
	return cmd.Run()
}
