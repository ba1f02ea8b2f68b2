package supervisor

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	p := Policy{RestartDelay: 100 * time.Millisecond, MaxRestartDelay: time.Second}
	want := []time.Duration{
		0, // the first restart in a row is immediate
		100 * time.Millisecond,
		150 * time.Millisecond,
		225 * time.Millisecond,
		337500 * time.Microsecond,
		506250 * time.Microsecond,
		759375 * time.Microsecond,
		time.Second, // 1.139 s, capped
		time.Second,
	}
	for n, w := range want {
		if got := p.backoff(n); got != w {
			t.Errorf("backoff(%d) = %s, want %s", n, got, w)
		}
	}
	// Far out the float overflows to +Inf; the cap must still hold.
	for _, n := range []int{50, 1000, 5000} {
		if got := p.backoff(n); got != time.Second {
			t.Errorf("backoff(%d) = %s, want the cap 1s", n, got)
		}
	}
}

func TestDefaultPolicyBackoff(t *testing.T) {
	t.Parallel()
	p := DefaultPolicy()
	if !p.Autorestart || p.MinUptime != time.Second || p.MaxRestarts != 16 || p.KillTimeout != 10*time.Second {
		t.Fatalf("DefaultPolicy() = %+v, not the DESIGN.md values", p)
	}
	if got := p.backoff(0); got != 0 {
		t.Errorf("first delay = %s, want 0 (immediate)", got)
	}
	if got := p.backoff(1); got != 100*time.Millisecond {
		t.Errorf("second delay = %s, want 100ms", got)
	}
	if got := p.backoff(4); got != 337500*time.Microsecond {
		t.Errorf("fifth delay = %s, want 337.5ms", got)
	}
	// 100 ms × 1.5^(n-1) passes 15 s at n = 14 (19.5 s).
	if got := p.backoff(13); got >= 15*time.Second {
		t.Errorf("backoff(13) = %s, want below the cap", got)
	}
	for _, n := range []int{14, 15, 40} {
		if got := p.backoff(n); got != 15*time.Second {
			t.Errorf("backoff(%d) = %s, want the 15s cap", n, got)
		}
	}
}
