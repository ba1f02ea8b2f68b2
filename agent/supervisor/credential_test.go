package supervisor

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestStopSignalAsksTheProcessToStop(t *testing.T) {
	t.Parallel()
	s := newSup(t, 0)
	pol := fastPolicy()
	pol.KillTimeout = 5 * time.Second
	// Like PostgreSQL: SIGTERM would wait for clients, SIGINT is the fast stop.
	spec := shSpec("int", `trap '' TERM; trap 'echo got INT; exit 0' INT; echo ready; while :; do sleep 0.05; done`, pol)
	spec.StopSignal = syscall.SIGINT
	p := add(t, s, spec)
	p.Start()
	waitFor(t, 5*time.Second, "ready", func() bool { return strings.Contains(tail(t, p), "ready") })
	start := time.Now()
	p.Stop()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Stop took %s: the stop signal did not reach the process", took)
	}
	if log := tail(t, p); !strings.Contains(log, "got INT") || strings.Contains(log, "SIGKILL") {
		t.Errorf("log:\n%s", log)
	}
}

func TestCredentialRunsAsAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to switch users")
	}
	t.Parallel()
	s := newSup(t, 0)
	pol := fastPolicy()
	pol.Autorestart = false
	spec := shSpec("who", "echo uid=$(id -u) gid=$(id -g)", pol)
	spec.Credential = &syscall.Credential{Uid: 65534, Gid: 65534}
	p := add(t, s, spec)
	p.Start()
	waitFor(t, 5*time.Second, "exit", func() bool { return p.Info().Status == Stopped })
	if log := tail(t, p); !strings.Contains(log, "uid=65534 gid=65534") {
		t.Errorf("log:\n%s", log)
	}
}
