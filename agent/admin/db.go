package admin

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/coder-slots/coder-slots/agent/deploy"
	"github.com/coder-slots/coder-slots/agent/postgres"
)

// Databases is what the database endpoints need from the agent; a Backend
// that implements it gets them.
type Databases interface {
	// Database describes PostgreSQL and every database, without secrets.
	Database(ctx context.Context) postgres.Status
	// ResetDatabase empties a slot's database and says what was done.
	ResetDatabase(ctx context.Context, slot string) (string, error)
}

func (a *API) dbRoutes() {
	db, ok := a.b.(Databases)
	if !ok {
		return
	}
	a.mux.HandleFunc("GET /api/db", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		writeJSON(w, http.StatusOK, db.Database(ctx))
	})
	a.mux.HandleFunc("GET /api/slots/{slot}/db", a.withSlot(func(w http.ResponseWriter, r *http.Request, name string) {
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		writeJSON(w, http.StatusOK, slotDatabase(db.Database(ctx), name))
	}))
	a.mux.HandleFunc("POST /api/slots/{slot}/db/reset", a.withSlot(func(w http.ResponseWriter, r *http.Request, name string) {
		resetDatabase(w, r, db, name)
	}))
}

// SlotDatabase is the answer of GET /api/slots/:slot/db.
type SlotDatabase struct {
	// Status is PostgreSQL's: starting, online, down, off or error.
	Status string `json:"status"`
	Detail string `json:"detail,omitempty"`
	// Database is the slot's; absent when PostgreSQL is off.
	Database *postgres.Database `json:"database,omitempty"`
}

func slotDatabase(st postgres.Status, name string) SlotDatabase {
	out := SlotDatabase{Status: st.State, Detail: st.Detail}
	for _, db := range st.Databases {
		if db.Slot == name {
			out.Database = &db
		}
	}
	return out
}

// ResetRequest is the body of POST /api/slots/:slot/db/reset.
type ResetRequest struct {
	// Confirm must be true: a reset drops every table of the database.
	Confirm bool `json:"confirm"`
}

func resetDatabase(w http.ResponseWriter, r *http.Request, db Databases, name string) {
	var req ResetRequest
	if !readJSON(w, r, &req) {
		return
	}
	if !req.Confirm {
		writeError(w, http.StatusBadRequest, "a reset drops every table of the slot's database", `send {"confirm": true}`)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
	defer cancel()
	msg, err := db.ResetDatabase(ctx, name)
	var busy deploy.ErrBusy
	switch {
	case errors.As(err, &busy):
		writeDeployError(w, err)
		return
	case err != nil:
		writeError(w, http.StatusServiceUnavailable, "database reset failed", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, Result{Success: true, Message: msg})
}
