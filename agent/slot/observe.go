package slot

import "github.com/coder-slots/coder-slots/agent/relay"

// observe passes a proxied response on to Config.Observe, when one is set.
func (s *Slot) observe(r relay.Response) {
	if s.cfg.Observe != nil {
		s.cfg.Observe(s.cfg.Name, r)
	}
}
