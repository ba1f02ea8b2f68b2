package admin

import (
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/coder-slots/coder-slots/agent/config"
	"github.com/coder-slots/coder-slots/agent/deploy"
	"github.com/coder-slots/coder-slots/agent/follow"
	"github.com/coder-slots/coder-slots/agent/gitpush"
	"github.com/coder-slots/coder-slots/agent/history"
	"github.com/coder-slots/coder-slots/agent/humanize"
	"github.com/coder-slots/coder-slots/agent/postgres"
	"github.com/coder-slots/coder-slots/agent/slot"
)

//go:embed web
var webFS embed.FS

var pages = template.Must(template.New("").Funcs(template.FuncMap{
	"bytes": humanize.Bytes,
	"size":  func(n int64) string { return humanize.Bytes(uint64(max(n, 0))) },
	"ms":    humanize.Millis,
	"short": shortID,
	"when":  func(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05 MST") },
	"page":  deployPage,
}).ParseFS(webFS, "web/*.html"))

func (a *API) uiRoutes() {
	static, _ := fs.Sub(webFS, "web/static")
	a.mux.HandleFunc("GET /static/{file...}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("file")
		if st, err := fs.Stat(static, name); err != nil || st.IsDir() {
			writeError(w, http.StatusNotFound, "no such file", r.URL.Path)
			return
		}
		http.ServeFileFS(w, r, static, name)
	})
	a.mux.HandleFunc("GET /{$}", a.dashboard)
	a.mux.HandleFunc("GET /slots/{slot}", func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("slot")
		if !config.ValidSlot(name) {
			writePageError(w, r, http.StatusNotFound, fmt.Sprintf("unknown slot %q: slots are %s", name, strings.Join(config.SlotNames, ", ")))
			return
		}
		a.slotPage(w, r, name)
	})
	a.mux.HandleFunc("GET /deploys/{id}", a.deployView)
}

// Row is one line of the dashboard.
type Row struct {
	ProcessRow
	Repo, Ref, Commit string
	// Spark is a slot's last hour, when the agent keeps a history.
	Spark *Spark
}

// dashboardData is what the dashboard shows.
type dashboardData struct {
	Title, Root string
	Rows        []Row
	// DB is PostgreSQL and its databases; nil when the agent has none or
	// the part refreshed does not show it.
	DB *postgres.Status
}

func (a *API) dashboard(w http.ResponseWriter, r *http.Request) {
	d := dashboardData{Title: "slotagent", Root: "./"}
	if db, ok := a.b.(Databases); ok && r.URL.Query().Get("part") != "part-rows" {
		st := db.Database(r.Context())
		d.DB = &st
	}
	for _, p := range a.processList().Processes {
		row := Row{ProcessRow: p}
		if p.Slot != "" {
			if ss := a.b.Slot(p.Slot); p.Type == "app" {
				rel, _ := ss.Find(ss.Current)
				row.Repo, row.Ref, row.Commit = rel.Repo, rel.Ref, rel.Commit
			}
			if a.hist != nil {
				row.Spark = spark(a.hist.History(p.Slot).ReadMerged(history.Hour, int(time.Minute/history.FineStep)))
			}
		}
		d.Rows = append(d.Rows, row)
	}
	render(w, r, "dashboard.html", d)
}

// slotData is what a slot's page shows.
type slotData struct {
	Title    string
	Root     string
	Slot     slot.Status
	Row      ProcessRow
	Env      []string // names only: values never leave the agent
	Releases ReleaseList
	Deploys  []deploy.Record
	Running  string // id of the deploy under way, if any
	Slots    []string
	Git      *gitpush.Remote // how to deploy with git push, when the agent has it
	GitError string          // why the slot's git repository is not usable
	// Charts are the slot's history, when the agent keeps one.
	Charts *Charts
	// Follow is the slot's following, when the agent has a follower.
	Follow *follow.Status
}

func (a *API) slotPage(w http.ResponseWriter, r *http.Request, name string) {
	d := slotData{Title: "slot " + name + " · slotagent", Root: "../", Slots: config.SlotNames}
	if a.hist != nil {
		rng, err := history.ParseRange(r.URL.Query().Get("range"))
		if err != nil {
			writePageError(w, r, http.StatusBadRequest, "invalid range: "+err.Error())
			return
		}
		c := slotCharts(a.hist.History(name), rng, d.Root)
		d.Charts = &c
	}
	for _, s := range a.b.Slots() {
		if s.Name == name {
			d.Slot = s
		}
	}
	for _, p := range a.processList().Processes {
		if p.Slot == name {
			d.Row = p
		}
	}
	if gp, ok := a.b.(GitPush); ok {
		if r, err := gp.GitRemote(name); err != nil {
			d.GitError = err.Error()
		} else {
			d.Git = &r
		}
	}
	if fb, ok := a.b.(Following); ok && fb.Follower() != nil {
		st := fb.Follower().Status(name)
		d.Follow = &st
	}
	ss := a.b.Slot(name)
	for k := range ss.Env {
		d.Env = append(d.Env, k)
	}
	sort.Strings(d.Env)
	d.Releases = releaseList(ss)
	d.Deploys = a.d.List(name)
	if len(d.Deploys) > 10 {
		d.Deploys = d.Deploys[:10]
	}
	for _, rec := range d.Deploys {
		if rec.Status == deploy.Running {
			d.Running = rec.ID
		}
	}
	render(w, r, "slot.html", d)
}

// render executes a page, or one of its parts (?part=NAME, a template
// defined in the page) for the live refresh, which swaps that part in.
func render(w http.ResponseWriter, r *http.Request, page string, data any) {
	name := page
	if part := r.URL.Query().Get("part"); part != "" {
		if pages.Lookup(part) == nil || !strings.HasPrefix(part, "part-") {
			writeError(w, http.StatusNotFound, fmt.Sprintf("no part %q", part), "")
			return
		}
		name = part
	}
	renderCode(w, http.StatusOK, name, data)
}

// renderCode executes the template name as the answer, with status code.
func renderCode(w http.ResponseWriter, code int, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Frame-Options", "DENY")
	w.Header().Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
	w.WriteHeader(code)
	if err := pages.ExecuteTemplate(w, name, data); err != nil {
		fmt.Fprintf(w, "<p class=error>page failed: %s</p>", template.HTMLEscapeString(err.Error()))
	}
}

// errorData is what an error page shows.
type errorData struct {
	Title, Root, Message string
}

// writePageError answers a page's request that failed with a page in the
// panel's style (the API's errors are JSON).
func writePageError(w http.ResponseWriter, r *http.Request, code int, msg string) {
	root := strings.Repeat("../", strings.Count(strings.TrimPrefix(r.URL.Path, "/"), "/"))
	if root == "" {
		root = "./"
	}
	renderCode(w, code, "error.html", errorData{Title: "error · slotagent", Root: root, Message: msg})
}

func shortID(s string) string {
	if len(s) == 40 || len(s) == 64 {
		return s[:7]
	}
	return s
}
