package daemon

import (
	"log/slog"

	"golang.org/x/sys/unix"

	"github.com/coder-slots/coder-slots/agent/config"
)

// fdReserve are the file descriptors kept out of the slots' share: the
// admin port and its clients, the control socket, log files, pipes of the
// supervised processes, PostgreSQL's clients.
const fdReserve = 256

// fitConnCap is max_conns_per_slot (configured), lowered so that every
// slot at its cap still fits in limit file descriptors: a client
// connection of a slot holds up to two (itself and its pinned upstream
// connection). Without it, under a low limit (ulimit -n 400) one slot's
// flood would take every descriptor before reaching its cap, and the
// admin port and the other slots with them. It is at least 1.
func fitConnCap(configured, slots int, limit uint64) int {
	if slots < 1 || limit <= fdReserve {
		return min(configured, 1)
	}
	fit := (limit - fdReserve) / uint64(2*slots)
	return max(1, int(min(uint64(configured), fit)))
}

// slotConnCap is fitConnCap for this process's limit (the Go runtime has
// raised the soft limit to the hard one), with a warning when it lowers
// the configured cap.
func slotConnCap(configured, slots int, log *slog.Logger) int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return configured
	}
	fit := fitConnCap(configured, slots, lim.Cur)
	if fit < configured {
		log.Warn("the file descriptor limit is low: each slot serves fewer connections at once than configured",
			"limit", lim.Cur, "connections_per_slot", fit, "configured", configured, "key", config.Describe("max_conns_per_slot"))
	}
	return fit
}
