package supervisor

import (
	"math"
	"time"
)

// Policy is how a process is restarted and stopped (PM2's semantics, with
// safer defaults).
type Policy struct {
	// Autorestart restarts the process whenever it exits on its own.
	Autorestart bool `json:"autorestart" mapstructure:"autorestart"`
	// MinUptime: an exit sooner than this after the start is unstable.
	MinUptime time.Duration `json:"min_uptime" mapstructure:"min_uptime"`
	// MaxRestarts unstable restarts in a row put the process in errored;
	// 0 means no limit (restart always).
	MaxRestarts int `json:"max_restarts" mapstructure:"max_restarts"`
	// KillTimeout is how long a stop waits after SIGTERM before SIGKILL.
	KillTimeout time.Duration `json:"kill_timeout" mapstructure:"kill_timeout"`
	// MaxMemory restarts the process when its whole tree's RSS passes this
	// many bytes; 0 disables the check.
	MaxMemory uint64 `json:"max_memory_restart" mapstructure:"max_memory_restart"`
	// MemoryCheckInterval is how often MaxMemory is checked.
	MemoryCheckInterval time.Duration `json:"memory_check_interval" mapstructure:"memory_check_interval"`
	// RestartDelay is the delay before the second restart in a row (the
	// first is immediate); each further restart waits 1.5 times longer, up
	// to MaxRestartDelay.
	RestartDelay time.Duration `json:"restart_delay" mapstructure:"restart_delay"`
	// MaxRestartDelay caps the exponential delay.
	MaxRestartDelay time.Duration `json:"max_restart_delay" mapstructure:"max_restart_delay"`
	// StableUptime: after this long up, the delay starts over from RestartDelay.
	StableUptime time.Duration `json:"stable_uptime" mapstructure:"stable_uptime"`
}

// DefaultPolicy is the policy of DESIGN.md: autorestart, min_uptime 1 s,
// max_restarts 16, kill_timeout 10 s, backoff 100 ms × 1.5 capped at 15 s
// and reset after 30 s of uptime; the first restart in a row is immediate.
func DefaultPolicy() Policy {
	return Policy{
		Autorestart:         true,
		MinUptime:           time.Second,
		MaxRestarts:         16,
		KillTimeout:         10 * time.Second,
		MemoryCheckInterval: 3 * time.Second,
		RestartDelay:        100 * time.Millisecond,
		MaxRestartDelay:     15 * time.Second,
		StableUptime:        30 * time.Second,
	}
}

// backoff returns the delay before the n-th restart in a row (n from 0):
// the first restart is immediate (an app that crashed once should be back
// as fast as it boots), the following ones wait RestartDelay × 1.5^(n-1),
// capped at MaxRestartDelay.
func (p Policy) backoff(n int) time.Duration {
	if n == 0 {
		return 0
	}
	d := float64(p.RestartDelay) * math.Pow(1.5, float64(n-1))
	if d > float64(p.MaxRestartDelay) {
		return p.MaxRestartDelay
	}
	return time.Duration(d)
}
