package admin

import (
	"context"
	"net/http"

	"github.com/coder-slots/coder-slots/agent/ecosystem"
)

// Exporter is what GET /api/ecosystem needs from the agent; a Backend that
// implements it gets the endpoint.
type Exporter interface {
	// Ecosystem is every process as PM2's ecosystem file, env values
	// masked unless reveal.
	Ecosystem(reveal bool) (ecosystem.File, error)
}

// controlOnly marks a request that came over the control socket.
type controlOnly struct{}

// fromControl reports whether r came over the control socket (mode 0600:
// the workspace user alone), the only place secrets may be revealed.
func fromControl(r *http.Request) bool { return r.Context().Value(controlOnly{}) != nil }

func (a *API) ecosystemRoutes() {
	ex, ok := a.b.(Exporter)
	if !ok {
		return
	}
	a.mux.HandleFunc("GET /api/ecosystem", func(w http.ResponseWriter, r *http.Request) {
		reveal := r.URL.Query().Get("reveal") == "1"
		if reveal && !fromControl(r) {
			writeError(w, http.StatusForbidden, "env values are revealed over the control socket only", "run `slotagent config --format ecosystem --reveal-env` in the workspace")
			return
		}
		f, err := ex.Ecosystem(reveal)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "cannot export the processes", err.Error())
			return
		}
		writeJSON(w, http.StatusOK, f)
	})
}

// markControl marks every request to next as one from the control socket.
func markControl(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), controlOnly{}, true)))
	})
}
