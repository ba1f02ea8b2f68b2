package humanize

import (
	"testing"
	"time"
)

func TestBytesAndDuration(t *testing.T) {
	for in, want := range map[uint64]string{0: "—", 512 << 10: "512 KiB", 43725619: "41.7 MiB"} {
		if got := Bytes(in); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[time.Duration]string{0: "—", -time.Second: "—", 42 * time.Second: "42s",
		5 * time.Minute: "5m", 3 * time.Hour: "3h", 50 * time.Hour: "2d"} {
		if got := Duration(in); got != want {
			t.Errorf("Duration(%s) = %q, want %q", in, got, want)
		}
	}
	if got := Millis(90_000); got != "1m" {
		t.Errorf("Millis(90000) = %q", got)
	}
}

func TestElapsed(t *testing.T) {
	for in, want := range map[time.Duration]string{-time.Second: "—", 0: "0.0 s", 350 * time.Millisecond: "0.4 s",
		12300 * time.Millisecond: "12.3 s", 125 * time.Second: "2 min 05 s"} {
		if got := Elapsed(in); got != want {
			t.Errorf("Elapsed(%s) = %q, want %q", in, got, want)
		}
	}
}
