package slot

import "time"

// observe passes a proxied response on to Config.Observe, when one is set:
// the status code and the time until the response header was sent.
func (s *Slot) observe(code int, d time.Duration) {
	if s.cfg.Observe != nil {
		s.cfg.Observe(s.cfg.Name, code, d)
	}
}
