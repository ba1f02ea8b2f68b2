package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/coder-slots/coder-slots/agent/deploy"
	"github.com/coder-slots/coder-slots/agent/slot"
	"github.com/coder-slots/coder-slots/agent/state"
)

// Deploys is what the deploy endpoints need from the agent.
type Deploys interface {
	Deploy(slot string, req deploy.Request) (deploy.Record, error)
	Rollback(slot, release, origin string) (deploy.Record, error)
	SetEnv(slot string, set map[string]string, unset []string, origin string) (map[string]string, *deploy.Record, error)
	Get(id string) (deploy.Record, bool)
	List(slot string) []deploy.Record
	Logs(id string) ([]string, <-chan string, func(), error)
}

// maxBody bounds every request body.
const maxBody = 1 << 20

func (a *API) deployRoutes() {
	a.mux.HandleFunc("POST /api/slots/{slot}/deploy", a.withSlot(a.deploy))
	a.mux.HandleFunc("POST /api/slots/{slot}/rollback", a.withSlot(a.rollback))
	a.mux.HandleFunc("GET /api/slots/{slot}/env", a.withSlot(a.getEnv))
	a.mux.HandleFunc("POST /api/slots/{slot}/env", a.withSlot(a.setEnv))
	a.mux.HandleFunc("GET /api/slots/{slot}/releases", a.withSlot(a.releases))
	a.mux.HandleFunc("GET /api/slots/{slot}/deploys", a.withSlot(a.deployList))
	a.mux.HandleFunc("GET /api/deploys/{id}", a.deployRecord)
	a.mux.HandleFunc("GET /api/deploys/{id}/log", a.deployLog)
}

// readJSON decodes a JSON body into v, refusing other content types,
// unknown fields and bodies over maxBody.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "the body must be JSON", "send Content-Type: application/json")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "request body too large", fmt.Sprintf("at most %d bytes", maxBody))
		} else {
			writeError(w, http.StatusBadRequest, "invalid JSON body", err.Error())
		}
		return false
	}
	if dec.More() {
		writeError(w, http.StatusBadRequest, "invalid JSON body", "one JSON object expected")
		return false
	}
	return true
}

// writeDeployError maps the deployer's errors to status codes.
func writeDeployError(w http.ResponseWriter, err error) {
	var busy deploy.ErrBusy
	switch {
	case errors.As(err, &busy):
		writeJSON(w, http.StatusConflict, struct {
			Error
			DeployID string `json:"deploy_id"`
		}{Error{Error: "a deploy is already running on this slot", Details: "deploy " + busy.Running}, busy.Running})
	case errors.Is(err, deploy.ErrInvalid):
		writeError(w, http.StatusBadRequest, strings.TrimPrefix(err.Error(), deploy.ErrInvalid.Error()+": "), "")
	default:
		writeError(w, http.StatusInternalServerError, "deploy failed to start", err.Error())
	}
}

// origin says where r came from, for deploy records: "cli" over the
// control socket, "panel" on the admin port.
func origin(r *http.Request) string {
	if fromControl(r) {
		return "cli"
	}
	return "panel"
}

func (a *API) deploy(w http.ResponseWriter, r *http.Request, name string) {
	var req deploy.Request
	if !readJSON(w, r, &req) {
		return
	}
	req.Origin = origin(r)
	rec, err := a.d.Deploy(name, req)
	if err != nil {
		writeDeployError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, withPage(rec))
}

// RollbackRequest is the body of POST /api/slots/:slot/rollback.
type RollbackRequest struct {
	// Release to go back to; empty means the one before the current.
	Release string `json:"release,omitempty"`
}

func (a *API) rollback(w http.ResponseWriter, r *http.Request, name string) {
	var req RollbackRequest
	if !readJSON(w, r, &req) {
		return
	}
	rec, err := a.d.Rollback(name, req.Release, origin(r))
	if err != nil {
		writeDeployError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, withPage(rec))
}

// EnvRequest is the body of POST /api/slots/:slot/env.
type EnvRequest struct {
	Set   map[string]string `json:"set,omitempty"`
	Unset []string          `json:"unset,omitempty"`
}

// EnvAnswer is the answer of the env endpoints: values are always masked.
type EnvAnswer struct {
	Env map[string]string `json:"env"`
	// Deploy is the release the change started, when the slot serves an app.
	Deploy *deploy.Record `json:"deploy,omitempty"`
}

func (a *API) getEnv(w http.ResponseWriter, _ *http.Request, name string) {
	writeJSON(w, http.StatusOK, EnvAnswer{Env: maskedEnv(a.b.Slot(name).Env)})
}

func (a *API) setEnv(w http.ResponseWriter, r *http.Request, name string) {
	var req EnvRequest
	if !readJSON(w, r, &req) {
		return
	}
	env, rec, err := a.d.SetEnv(name, req.Set, req.Unset, origin(r))
	if err != nil {
		writeDeployError(w, err)
		return
	}
	code := http.StatusOK
	if rec != nil {
		code = http.StatusAccepted
	}
	writeJSON(w, code, EnvAnswer{Env: maskedEnv(env), Deploy: rec})
}

func maskedEnv(env map[string]string) map[string]string {
	if m := slot.Mask(env); m != nil {
		return m
	}
	return map[string]string{}
}

// ReleaseInfo is one kept release in GET /api/slots/:slot/releases.
type ReleaseInfo struct {
	state.Release
	Current bool `json:"current"`
}

// ReleaseList is the answer of GET /api/slots/:slot/releases.
type ReleaseList struct {
	Current  string        `json:"current,omitempty"`
	Releases []ReleaseInfo `json:"releases"`
}

func (a *API) releases(w http.ResponseWriter, _ *http.Request, name string) {
	writeJSON(w, http.StatusOK, releaseList(a.b.Slot(name)))
}

// releaseList lists a slot's kept releases, newest first, env masked.
func releaseList(ss state.Slot) ReleaseList {
	out := ReleaseList{Current: ss.Current, Releases: []ReleaseInfo{}}
	for i := len(ss.Releases) - 1; i >= 0; i-- {
		rel := ss.Releases[i]
		rel.Env = slot.Mask(rel.Env)
		out.Releases = append(out.Releases, ReleaseInfo{Release: rel, Current: rel.ID == ss.Current})
	}
	return out
}

// DeployRecord is a deploy record as the API answers it: with the path
// of its page in the panel.
type DeployRecord struct {
	deploy.Record
	// Page is the deploy's page, relative to the panel's URL.
	Page string `json:"page"`
}

// deployPage is the path of a deploy's page, relative to the panel's root.
func deployPage(id string) string { return "deploys/" + url.PathEscape(id) }

func withPage(rec deploy.Record) DeployRecord {
	return DeployRecord{Record: rec, Page: deployPage(rec.ID)}
}

// DeployList is the answer of GET /api/slots/:slot/deploys.
type DeployList struct {
	Deploys []DeployRecord `json:"deploys"`
}

func (a *API) deployList(w http.ResponseWriter, _ *http.Request, name string) {
	list := DeployList{Deploys: []DeployRecord{}}
	for _, rec := range a.d.List(name) {
		list.Deploys = append(list.Deploys, withPage(rec))
	}
	writeJSON(w, http.StatusOK, list)
}

func (a *API) deployRecord(w http.ResponseWriter, r *http.Request) {
	rec, ok := a.d.Get(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown deploy %q", r.PathValue("id")), "")
		return
	}
	writeJSON(w, http.StatusOK, withPage(rec))
}

// deployLog streams a deploy's log until the deploy ends: Server-Sent
// Events when the client accepts text/event-stream (an "end" event carries
// the final record), plain text otherwise.
func (a *API) deployLog(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if _, ok := a.d.Get(id); !ok {
		writeError(w, http.StatusNotFound, fmt.Sprintf("unknown deploy %q", id), "")
		return
	}
	lines, next, cancel, err := a.d.Logs(id)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "cannot read the deploy's log", err.Error())
		return
	}
	defer cancel()
	// ?until=git ends a push's log once its release waits for git (the
	// pre-receive hook then lets git go on).
	var waiting <-chan struct{}
	if gp, ok := a.b.(GitPush); ok && r.URL.Query().Get("until") == "git" {
		waiting = gp.PushWaiting(id)
	}
	sse := strings.Contains(r.Header.Get("Accept"), "text/event-stream")
	if sse {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-store")
	} else {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	flusher, _ := w.(http.Flusher)
	emit := func(line string) {
		if sse {
			fmt.Fprintf(w, "data: %s\n\n", strings.ReplaceAll(line, "\r", ""))
		} else {
			io.WriteString(w, line+"\n")
		}
	}
	for _, l := range lines {
		emit(l)
	}
	for next != nil {
		if flusher != nil {
			flusher.Flush()
		}
		select {
		case l, ok := <-next:
			if !ok {
				next = nil
				continue
			}
			emit(l)
		case <-waiting:
			for {
				select {
				case l, ok := <-next:
					if ok {
						emit(l)
						continue
					}
				default:
				}
				return
			}
		case <-r.Context().Done():
			return
		}
	}
	if sse {
		rec, _ := a.d.Get(id)
		b, _ := json.Marshal(rec)
		fmt.Fprintf(w, "event: end\ndata: %s\n\n", b)
	}
}
