//go:build !linux

package supervisor

import "os/exec"

// runChild runs cmd. Outside Linux a child outlives a process killed without a chance to stop
// it.
func runChild(cmd *exec.Cmd) error { return cmd.Run() }
