package deploy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/coder-slots/coder-slots/agent/internal/atomicfile"
)

// Status is a deploy's outcome so far.
type Status string

// The statuses of a deploy.
const (
	Running   Status = "running"
	Succeeded Status = "succeeded"
	Failed    Status = "failed"
	Canceled  Status = "canceled"
	// Abandoned is a deploy that was running when the agent died.
	Abandoned Status = "abandoned"
)

// Trigger says what started a deploy.
type Trigger string

// The triggers of a deploy.
const (
	TriggerDeploy   Trigger = "deploy"
	TriggerEnv      Trigger = "env"
	TriggerRollback Trigger = "rollback"
	// TriggerGitPush is a deploy from `git push` to the slot's repository.
	TriggerGitPush Trigger = "git-push"
	// TriggerFollow is a deploy of a followed branch's new commit.
	TriggerFollow Trigger = "follow"
)

// Stage is one timed step of a deploy.
type Stage struct {
	Name       string    `json:"name"`
	StartedAt  time.Time `json:"started_at"`
	DurationMS int64     `json:"duration_ms"`
}

// Record is what is known of one deploy; credentials in Repo are redacted.
type Record struct {
	ID      string  `json:"id"`
	Slot    string  `json:"slot"`
	Trigger Trigger `json:"trigger"`
	// Origin is where a deploy, rollback or env change was asked for:
	// "panel" (the admin port) or "cli" (the control socket); empty when
	// not known (a follow or git push deploy, a record of an older agent).
	Origin string `json:"origin,omitempty"`
	Repo   string `json:"repo,omitempty"`
	Ref    string `json:"ref,omitempty"`
	Dir    string `json:"dir,omitempty"`
	Commit string `json:"commit,omitempty"`
	// Subject is the first line of the commit's message, masked like the
	// deploy's log and at most MaxSubject characters; empty when the
	// source is no commit (a folder) or for records of older agents.
	Subject string `json:"subject,omitempty"`
	Release string `json:"release,omitempty"`
	// Previous is the commit the slot served when the deploy began.
	Previous string `json:"previous,omitempty"`
	// Language and Plan: what the app is and how it is installed, built
	// and started, once detected.
	Language   string    `json:"language,omitempty"`
	Plan       string    `json:"plan,omitempty"`
	Status     Status    `json:"status"`
	Error      string    `json:"error,omitempty"`
	Stages     []Stage   `json:"stages"`
	CreatedAt  time.Time `json:"created_at"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// Log is the path of the deploy's log file.
	Log string `json:"log"`
}

// records keeps deploy records as one JSON file each under
// <dir>/<slot>/<id>.json, with the deploy's log files beside them.
type records struct {
	dir  string
	keep int

	mu     sync.Mutex
	bySlot map[string][]*Record // oldest first
}

// loadRecords reads every record; those left running by a dead agent
// become abandoned. Temporary files of writes a crash cut short are removed.
func loadRecords(dir string, keep int) (*records, error) {
	r := &records{dir: dir, keep: keep, bySlot: map[string][]*Record{}}
	temps, err := filepath.Glob(filepath.Join(dir, "*", ".*.json.tmp-*"))
	if err != nil {
		return nil, fmt.Errorf("list deploy records: %w", err)
	}
	old, _ := filepath.Glob(filepath.Join(dir, "*", "*.json.tmp")) // the naming of earlier versions
	for _, f := range append(temps, old...) {
		if err := os.Remove(f); err != nil {
			return nil, fmt.Errorf("remove a torn deploy record: %w", err)
		}
	}
	files, err := filepath.Glob(filepath.Join(dir, "*", "*.json"))
	if err != nil {
		return nil, fmt.Errorf("list deploy records: %w", err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("read deploy record: %w", err)
		}
		var rec Record
		if err := json.Unmarshal(b, &rec); err != nil || rec.ID == "" {
			continue // a record torn by a crash is not worth stopping the agent for
		}
		if rec.Status == Running {
			rec.Status, rec.FinishedAt = Abandoned, time.Now().UTC()
			rec.Error = "the agent stopped while this deploy was running"
			if err := r.write(&rec); err != nil {
				return nil, err
			}
		}
		r.bySlot[rec.Slot] = append(r.bySlot[rec.Slot], &rec)
	}
	for _, list := range r.bySlot {
		sort.Slice(list, func(i, j int) bool { return list[i].ID < list[j].ID })
	}
	return r, nil
}

func (r *records) slotDir(slot string) string { return filepath.Join(r.dir, slot) }

// add stores a new record and forgets the oldest beyond keep.
func (r *records) add(rec *Record) error {
	if err := os.MkdirAll(r.slotDir(rec.Slot), 0o700); err != nil {
		return fmt.Errorf("create deploy dir: %w", err)
	}
	if err := r.write(rec); err != nil {
		return err
	}
	r.mu.Lock()
	list := append(r.bySlot[rec.Slot], rec)
	var drop []*Record
	if len(list) > r.keep {
		drop, list = list[:len(list)-r.keep], list[len(list)-r.keep:]
	}
	r.bySlot[rec.Slot] = list
	r.mu.Unlock()
	for _, old := range drop {
		r.remove(old)
	}
	return nil
}

// update changes a record and writes it.
func (r *records) update(rec *Record, change func(*Record)) error {
	r.mu.Lock()
	change(rec)
	cp := *rec
	r.mu.Unlock()
	return r.write(&cp)
}

func (r *records) write(rec *Record) error {
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return fmt.Errorf("encode deploy record: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(r.slotDir(rec.Slot), rec.ID+".json"), b, 0o600); err != nil {
		return fmt.Errorf("save deploy record: %w", err)
	}
	return nil
}

// remove deletes a record and its log files.
func (r *records) remove(rec *Record) {
	base := filepath.Join(r.slotDir(rec.Slot), rec.ID)
	for _, suffix := range []string{".json", ".log", "-out.log", "-error.log"} {
		_ = os.Remove(base + suffix)
	}
}

// updateID changes the record with that id, if it is kept, and writes it.
func (r *records) updateID(id string, change func(*Record)) error {
	slot, _, _ := strings.Cut(id, "-")
	r.mu.Lock()
	var found *Record
	for _, rec := range r.bySlot[slot] {
		if rec.ID == id {
			found = rec
		}
	}
	r.mu.Unlock()
	if found == nil {
		return nil
	}
	return r.update(found, change)
}

// get returns a copy of the record with that id.
func (r *records) get(id string) (Record, bool) {
	slot, _, _ := strings.Cut(id, "-")
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rec := range r.bySlot[slot] {
		if rec.ID == id {
			return *rec, true
		}
	}
	return Record{}, false
}

// list returns copies of a slot's records, newest first.
func (r *records) list(slot string) []Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	list := r.bySlot[slot]
	out := make([]Record, 0, len(list))
	for i := len(list) - 1; i >= 0; i-- {
		out = append(out, *list[i])
	}
	return out
}
