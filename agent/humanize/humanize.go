// Package humanize formats sizes and durations for people, the same way in
// the CLI and the admin panel.
package humanize

import (
	"fmt"
	"math"
	"time"
)

// Bytes is a size such as "512 KiB" or "41.7 MiB"; 0 is "—" (not measured).
func Bytes(b uint64) string {
	switch {
	case b == 0:
		return "—"
	case b < 1<<20:
		return fmt.Sprintf("%.0f KiB", float64(b)/(1<<10))
	default:
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	}
}

// Duration is a short uptime such as "42s", "5m", "3h" or "2d"; 0 or less
// is "—".
func Duration(d time.Duration) string {
	switch {
	case d <= 0:
		return "—"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

// Millis is Duration of a number of milliseconds.
func Millis(ms int64) string { return Duration(time.Duration(ms) * time.Millisecond) }

// Elapsed is how long a step took, to a tenth of a second: "0.4 s",
// "12.3 s", "2 min 05 s".
func Elapsed(d time.Duration) string {
	switch {
	case d < 0:
		return "—"
	case d < time.Minute:
		return fmt.Sprintf("%.1f s", math.Round(d.Seconds()*10)/10)
	default:
		return fmt.Sprintf("%d min %02d s", int(d.Minutes()), int(d.Seconds())%60)
	}
}
