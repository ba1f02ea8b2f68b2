package admin

import (
	"net/http"

	"github.com/coder-slots/coder-slots/agent/history"
)

// Histories is what the history endpoint and the panel's charts need from
// the agent; a Backend that implements it gets them.
type Histories interface {
	// History is a slot's history (the slot's name is valid).
	History(slot string) *history.Slot
}

// SlotHistory is the answer of GET /api/slots/:slot/history.
type SlotHistory struct {
	Slot string `json:"slot"`
	history.Series
}

func (a *API) historyRoutes() {
	h, ok := a.b.(Histories)
	if !ok {
		return
	}
	a.hist = h
	a.mux.HandleFunc("GET /api/slots/{slot}/history", a.withSlot(func(w http.ResponseWriter, r *http.Request, name string) {
		values := r.URL.Query()["range"]
		if len(values) > 1 {
			writeError(w, http.StatusBadRequest, "invalid range", "give range once: 1h or 24h")
			return
		}
		rng, err := history.ParseRange(r.URL.Query().Get("range"))
		if err != nil {
			writeError(w, http.StatusBadRequest, "invalid range", err.Error())
			return
		}
		writeJSON(w, http.StatusOK, SlotHistory{Slot: name, Series: h.History(name).Read(rng)})
	}))
}
