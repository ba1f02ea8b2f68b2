package admin

import (
	"net/http"

	"github.com/coder-slots/coder-slots/agent/deploy"
	"github.com/coder-slots/coder-slots/agent/gitpush"
)

// GitPush is what the git push endpoints need from the agent; a Backend
// that implements it gets them.
type GitPush interface {
	// GitRemote makes the slot's repository when it is missing and says
	// how to push to it.
	GitRemote(slot string) (gitpush.Remote, error)
	// Push starts the deploy of a commit pushed to the slot's repository.
	Push(slot string, p deploy.Push) (deploy.Record, error)
	// PushWaiting is closed once a push's deploy waits for git to move
	// its branch (nil: not a push's deploy under way).
	PushWaiting(id string) <-chan struct{}
	// RefUpdate hands a report of the repository's reference-transaction
	// hook to the push's deploy and says what the pusher should read.
	RefUpdate(slot string, ev deploy.RefEvent) (string, error)
}

// RefAnswer is the answer of POST /api/slots/{slot}/push/ref.
type RefAnswer struct {
	Message string `json:"message,omitempty"`
}

func (a *API) gitRoutes() {
	gp, ok := a.b.(GitPush)
	if !ok {
		return
	}
	a.mux.HandleFunc("GET /api/slots/{slot}/git-remote", a.withSlot(func(w http.ResponseWriter, _ *http.Request, name string) {
		r, err := gp.GitRemote(name)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "the slot's git repository is not usable", err.Error())
			return
		}
		writeJSON(w, http.StatusOK, r)
	}))
	// Only the hook starts a push's deploy, over the control socket: the
	// admin port never does.
	a.mux.HandleFunc("POST /api/slots/{slot}/push", a.withSlot(func(w http.ResponseWriter, r *http.Request, name string) {
		if !fromControl(r) {
			writeError(w, http.StatusForbidden, "git push deploys are started over the control socket only", "push to the slot's git repository (slotagent git-remote "+name+")")
			return
		}
		var p deploy.Push
		if !readJSON(w, r, &p) {
			return
		}
		rec, err := gp.Push(name, p)
		if err != nil {
			writeDeployError(w, err)
			return
		}
		writeJSON(w, http.StatusAccepted, rec)
	}))
	a.mux.HandleFunc("POST /api/slots/{slot}/push/ref", a.withSlot(func(w http.ResponseWriter, r *http.Request, name string) {
		if !fromControl(r) {
			writeError(w, http.StatusForbidden, "git push deploys are driven over the control socket only", "")
			return
		}
		var ev deploy.RefEvent
		if !readJSON(w, r, &ev) {
			return
		}
		msg, err := gp.RefUpdate(name, ev)
		if err != nil {
			writeDeployError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, RefAnswer{Message: msg})
	}))
}
