package admin

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/coder-slots/coder-slots/agent/config"
	"github.com/coder-slots/coder-slots/agent/follow"
)

// Following is what the follow and preview endpoints need from the agent.
type Following interface {
	// Follower has slots follow their branch.
	Follower() *follow.Follower
}

// FollowRequest is the body of PUT /api/slots/:slot/follow.
type FollowRequest struct {
	// On turns following on (or resumes it); false turns it off.
	On bool `json:"on"`
	// Branch to follow; empty keeps the slot's, else its release's ref.
	Branch string `json:"branch,omitempty"`
	// Interval between checks, a Go duration ("30s"); empty keeps the
	// slot's, else 30s.
	Interval string `json:"interval,omitempty"`
}

// PreviewRequest is the body of POST /api/previews.
type PreviewRequest struct {
	Repo   string `json:"repo"`
	Branch string `json:"branch"`
	// Slot to use; empty takes a free one.
	Slot            string `json:"slot,omitempty"`
	Interval        string `json:"interval,omitempty"`
	ReleaseOnDelete bool   `json:"release_on_delete,omitempty"`
}

// PreviewAnswer is the answer of POST /api/previews.
type PreviewAnswer struct {
	Slot   string        `json:"slot"`
	URL    string        `json:"url,omitempty"`
	Follow follow.Status `json:"follow"`
}

func (a *API) followRoutes() {
	fb, ok := a.b.(Following)
	if !ok {
		return
	}
	a.mux.HandleFunc("GET /api/slots/{slot}/follow", a.withSlot(func(w http.ResponseWriter, _ *http.Request, name string) {
		writeJSON(w, http.StatusOK, fb.Follower().Status(name))
	}))
	a.mux.HandleFunc("PUT /api/slots/{slot}/follow", a.withSlot(func(w http.ResponseWriter, r *http.Request, name string) {
		var req FollowRequest
		if !readJSON(w, r, &req) {
			return
		}
		f := fb.Follower()
		if !req.On {
			if req.Branch != "" || req.Interval != "" {
				writeError(w, http.StatusBadRequest, "branch and interval go with on: true", "")
				return
			}
			if err := f.Off(name); err != nil {
				writeFollowError(w, err)
				return
			}
			writeJSON(w, http.StatusOK, f.Status(name))
			return
		}
		interval, ok := parseInterval(w, req.Interval)
		if !ok {
			return
		}
		st, err := f.Set(name, follow.Settings{Branch: req.Branch, Interval: interval})
		if err != nil {
			writeFollowError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, st)
	}))
	a.mux.HandleFunc("POST /api/slots/{slot}/follow/check", a.withSlot(func(w http.ResponseWriter, _ *http.Request, name string) {
		f := fb.Follower()
		if !f.Kick(name) {
			writeError(w, http.StatusConflict, "slot "+name+" does not follow a branch", "turn it on with PUT /api/slots/"+name+"/follow")
			return
		}
		writeJSON(w, http.StatusAccepted, f.Status(name))
	}))
	a.mux.HandleFunc("POST /api/previews", func(w http.ResponseWriter, r *http.Request) {
		var req PreviewRequest
		if !readJSON(w, r, &req) {
			return
		}
		if req.Slot != "" && !config.ValidSlot(req.Slot) {
			writeError(w, http.StatusBadRequest, "unknown slot "+quote(req.Slot), "slots are "+strings.Join(config.SlotNames, ", "))
			return
		}
		interval, ok := parseInterval(w, req.Interval)
		if !ok {
			return
		}
		name, st, err := fb.Follower().Preview(req.Repo, req.Branch, req.Slot, interval, req.ReleaseOnDelete)
		if err != nil {
			writeFollowError(w, err)
			return
		}
		ans := PreviewAnswer{Slot: name, Follow: st}
		for _, s := range a.b.Slots() {
			if s.Name == name {
				ans.URL = s.URL
			}
		}
		writeJSON(w, http.StatusAccepted, ans)
	})
}

func quote(s string) string { return `"` + s + `"` }

// parseInterval reads an interval ("" is zero: keep or default).
func parseInterval(w http.ResponseWriter, s string) (time.Duration, bool) {
	if s == "" {
		return 0, true
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		writeError(w, http.StatusBadRequest, "invalid interval "+quote(s), "a duration such as 30s or 2m")
		return 0, false
	}
	return d, true
}

func writeFollowError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, follow.ErrInvalid):
		writeError(w, http.StatusBadRequest, strings.TrimPrefix(err.Error(), follow.ErrInvalid.Error()+": "), "")
	case errors.Is(err, follow.ErrNoFreeSlot):
		writeError(w, http.StatusConflict, err.Error(), "")
	default:
		writeError(w, http.StatusInternalServerError, "follow settings not saved", err.Error())
	}
}
