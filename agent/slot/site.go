package slot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/coder-slots/coder-slots/agent/relay"
	"github.com/coder-slots/coder-slots/agent/static"
)

// site is a static site served by the agent on a release's internal port,
// behind the slot's proxy like any app (so health, drain and metrics are
// the same).
type site struct {
	srv *http.Server
	h   *static.Handler
}

// launchSite serves rel.Static on a fresh loopback port.
func (s *Slot) launchSite(rel Release) (*Candidate, error) {
	h, err := static.New(rel.Static, rel.SPA)
	if err != nil {
		return nil, fmt.Errorf("release %s: %w", rel.ID, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("choose an internal port: %w", err)
	}
	st := &site{h: h, srv: &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}}
	go func() {
		if err := st.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log := s.cfg.Log
			if log == nil {
				log = slog.Default()
			}
			log.Error("static site stopped", "slot", s.cfg.Name, "release", rel.ID, "err", err)
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	up := relay.NewUpstream(net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	return &Candidate{t: &target{release: rel, port: port, site: st, up: up}}, nil
}

// close stops the site's server: the slot's proxy has drained it already,
// so the connections left are idle ones.
func (st *site) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if st.srv.Shutdown(ctx) != nil {
		st.srv.Close()
	}
	st.h.Close()
}
