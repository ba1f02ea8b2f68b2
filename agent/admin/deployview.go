package admin

import (
	"fmt"
	"net/http"
	"time"

	"github.com/coder-slots/coder-slots/agent/config"
	"github.com/coder-slots/coder-slots/agent/deploy"
	"github.com/coder-slots/coder-slots/agent/humanize"
)

// deployData is what a deploy's page shows.
type deployData struct {
	Title, Root string
	Slots       []string
	Rec         deploy.Record
	// Trigger says in words what started the deploy.
	Trigger string
	// Stages are the finished stages and, while the deploy runs, the one
	// under way, as parts of a bar.
	Stages []stageBar
	Took   string
	// Kept tells whether the deploy's release is still on disk, Current
	// whether it serves: a kept release that does not serve can be rolled
	// back to.
	Kept, Current bool
}

// stageBar is one stage of a deploy: where it starts on the bar and its
// share of it, in %.
type stageBar struct {
	Name, Took string
	X, Share   float64
	Running    bool
}

// triggerText says what started rec, and from where, in words.
func triggerText(rec deploy.Record) string {
	from := map[string]string{"panel": " from the panel or the API", "cli": " from the command line"}[rec.Origin]
	switch rec.Trigger {
	case deploy.TriggerGitPush:
		return "git push"
	case deploy.TriggerFollow:
		return "follow: a new commit on the followed branch"
	case deploy.TriggerRollback:
		return "rollback" + from
	case deploy.TriggerEnv:
		return "environment change" + from + " (same code, new release)"
	}
	return "deploy" + from
}

// stageBars lays rec's stages out on a bar, and says how long the deploy
// took; a running deploy's time since its last stage is the stage under
// way.
func stageBars(rec deploy.Record, now time.Time) ([]stageBar, time.Duration) {
	var out []stageBar
	var lengths []time.Duration
	var total time.Duration
	end := rec.CreatedAt
	add := func(name string, d time.Duration, running bool) {
		out = append(out, stageBar{Name: name, Took: humanize.Elapsed(d), Running: running})
		lengths = append(lengths, d)
		total += d
	}
	for _, s := range rec.Stages {
		d := time.Duration(s.DurationMS) * time.Millisecond
		add(s.Name, d, false)
		end = s.StartedAt.Add(d)
	}
	if rec.Status == deploy.Running {
		add("under way", max(now.Sub(end), 0), true)
	}
	x := 0.0
	for i := range out {
		out[i].X, out[i].Share = x, 100*lengths[i].Seconds()/max(total.Seconds(), 1e-3)
		x += out[i].Share
	}
	if !rec.FinishedAt.IsZero() {
		total = rec.FinishedAt.Sub(rec.CreatedAt)
	}
	return out, total
}

func (a *API) deployView(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	rec, ok := a.d.Get(id)
	if !ok {
		writePageError(w, r, http.StatusNotFound, fmt.Sprintf("unknown deploy %q", id))
		return
	}
	d := deployData{Title: "deploy " + rec.ID + " · slotagent", Root: "../", Slots: config.SlotNames, Rec: rec, Trigger: triggerText(rec)}
	var took time.Duration
	d.Stages, took = stageBars(rec, time.Now())
	d.Took = humanize.Elapsed(took)
	if rec.Release != "" {
		ss := a.b.Slot(rec.Slot)
		_, d.Kept = ss.Find(rec.Release)
		d.Current = ss.Current == rec.Release
	}
	render(w, r, "deploy.html", d)
}
