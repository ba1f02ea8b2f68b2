package admin

import (
	"fmt"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/coder-slots/coder-slots/agent/config"
	"github.com/coder-slots/coder-slots/agent/slot"
	"github.com/coder-slots/coder-slots/agent/supervisor"
)

// The old panel's per-process endpoints, with the shapes its PM2-backed
// handlers answered, so that scripts written against it keep working.
func (a *API) legacyRoutes() {
	a.mux.HandleFunc("GET /api/processes/{slot}", a.processRow)
	a.mux.HandleFunc("GET /api/processes/{slot}/status", a.withSlot(a.processStatus))
}

// processRow answers one row of GET /api/processes, by slot letter ("a")
// or by process name ("slot-a", "admin", "coder-agent").
func (a *API) processRow(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("slot")
	list := a.processList()
	for _, row := range list.Processes {
		if row.Slot == name || row.Name == name {
			writeJSON(w, http.StatusOK, row)
			return
		}
	}
	names := make([]string, 0, len(list.Processes))
	for _, row := range list.Processes {
		names = append(names, row.Name)
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("unknown slot or process %q", name),
		"slots are "+strings.Join(config.SlotNames, ", ")+"; processes are "+strings.Join(names, ", "))
}

// LegacyStatus is the answer of GET /api/processes/:slot/status: the old
// panel's {pm2, slot, type, url}.
type LegacyStatus struct {
	PM2  PM2Process `json:"pm2"`
	Slot LegacySlot `json:"slot"`
	// Type is "placeholder", "app" or "static".
	Type string `json:"type"`
	URL  string `json:"url"`
}

// PM2Process has the fields of PM2's process description (pm2 jlist) that
// the old panel's scripts read, filled from the supervisor.
type PM2Process struct {
	Name string `json:"name"`
	// PMID is the process's index in GET /api/processes (admin is 0, slot a 1).
	PMID   int      `json:"pm_id"`
	PID    int      `json:"pid"`
	Status string   `json:"status"`
	Monit  PM2Monit `json:"monit"`
	Env    PM2Env   `json:"pm2_env"`
}

// PM2Monit is PM2's monit: CPU in percent of one core, memory (RSS) in bytes.
type PM2Monit struct {
	CPU    float64 `json:"cpu"`
	Memory uint64  `json:"memory"`
}

// PM2Env is the part of PM2's pm2_env the old scripts read.
type PM2Env struct {
	Status string `json:"status"`
	// Uptime is when the process last started, in milliseconds since the
	// Unix epoch (PM2's pm_uptime is a start time, not a duration).
	Uptime           int64  `json:"pm_uptime"`
	Restarts         int    `json:"restart_time"`
	UnstableRestarts int    `json:"unstable_restarts"`
	ExecMode         string `json:"exec_mode"`
	Cwd              string `json:"pm_cwd"`
}

// LegacySlot is the old panel's slot object.
type LegacySlot struct {
	Name    string `json:"name"`
	Port    int    `json:"port"`
	URL     string `json:"url"`
	Release string `json:"release,omitempty"`
	Error   string `json:"error,omitempty"`
}

// pm2Status names a supervisor status the way PM2 does (PM2 writes
// "waiting restart" with a space; the other names are the same).
func pm2Status(s string) string {
	if s == string(supervisor.WaitingRestart) {
		return "waiting restart"
	}
	return s
}

func (a *API) processStatus(w http.ResponseWriter, _ *http.Request, name string) {
	var st slot.Status
	for _, s := range a.b.Slots() {
		if s.Name == name {
			st = s
		}
	}
	rows := a.processList().Processes
	id := 0
	for i, row := range rows {
		if row.Slot == name {
			id = i
		}
	}
	row := rows[id]
	// A placeholder is served by the agent itself: its start and folder.
	started, cwd := a.b.About().StartedAt, ""
	if wd, err := os.Getwd(); err == nil {
		cwd = wd
	}
	unstable := 0
	if p := st.Process; p != nil {
		started, cwd, unstable = p.StartedAt, st.Dir, p.Unstable
	}
	status := pm2Status(row.Status)
	writeJSON(w, http.StatusOK, LegacyStatus{
		PM2: PM2Process{
			Name: row.Name, PMID: id, PID: row.PID, Status: status,
			Monit: PM2Monit{CPU: row.CPU, Memory: row.Memory},
			Env: PM2Env{Status: status, Uptime: msEpoch(started), Restarts: row.Restarts,
				UnstableRestarts: unstable, ExecMode: "fork_mode", Cwd: cwd},
		},
		Slot: LegacySlot{Name: st.Name, Port: st.Port, URL: st.URL, Release: st.Release, Error: row.Error},
		Type: st.Type,
		URL:  st.URL,
	})
}

// msEpoch is t in milliseconds since the Unix epoch, 0 for the zero time.
func msEpoch(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}
