package daemon

import "testing"

func TestFitConnCap(t *testing.T) {
	for _, c := range []struct {
		configured, slots int
		limit             uint64
		want              int
	}{
		{1024, 5, 1 << 20, 1024}, // a container's usual limit: as configured
		{1024, 5, 65536, 1024},   // 5 × 2 × 1024 + 256 fits
		{1024, 5, 10496, 1024},   // exactly
		{1024, 5, 10495, 1023},   // one short
		{1024, 5, 1024, 76},      // ulimit -n 1024
		{1024, 5, 400, 14},       // ulimit -n 400: 5 × 2 × 14 + 256 = 396
		{20, 5, 400, 14},         // the configured cap when it is lower still
		{10, 5, 400, 10},         //
		{1024, 5, 100, 1},        // below the reserve: one each
		{1024, 0, 400, 1},        // no slots (not a case the agent has)
	} {
		if got := fitConnCap(c.configured, c.slots, c.limit); got != c.want {
			t.Errorf("fitConnCap(%d, %d, %d) = %d, want %d", c.configured, c.slots, c.limit, got, c.want)
		}
	}
}
