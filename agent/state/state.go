// Package state is the agent's state file: the desired state of every slot,
// written atomically so that a crash at any moment leaves either the old or
// the new file, never a broken one.
package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"time"

	"github.com/coder-slots/coder-slots/agent/internal/atomicfile"
	"github.com/coder-slots/coder-slots/agent/procgroup"
)

// Version is the format version this package reads and writes.
const Version = 1

// Desired values of a slot.
const (
	// DesiredPlaceholder means the slot serves the placeholder.
	DesiredPlaceholder = "placeholder"
	// DesiredRunning means the slot serves its current release.
	DesiredRunning = "running"
)

// State is everything the agent must remember across restarts.
type State struct {
	// Version is the format version, always Version.
	Version int `json:"version"`
	// Agent is the agent that last wrote the file.
	Agent *procgroup.Identity `json:"agent,omitempty"`
	// Slots maps slot name to its state.
	Slots map[string]*Slot `json:"slots"`
	// Groups maps process name to the leader of a running process group,
	// to kill after an unclean stop.
	Groups map[string]procgroup.Identity `json:"groups,omitempty"`
	// Members maps process name to the processes of its group as they were
	// when the group's stop began, to kill one by one (each when its PID
	// and start time still match) after an unclean stop: the leader may
	// have exited first, and its group cannot be found by it.
	Members map[string][]procgroup.Identity `json:"members,omitempty"`
}

// Slot is one slot's desired state and releases.
type Slot struct {
	// Desired is DesiredPlaceholder or DesiredRunning (serve Current).
	Desired string `json:"desired"`
	// Current is the ID of the release to serve.
	Current string `json:"current,omitempty"`
	// Previous is the release that was current before Current (what a
	// rollback that names no release goes back to), when known.
	Previous string `json:"previous,omitempty"`
	// Releases are the releases kept on disk, oldest first.
	Releases []Release `json:"releases,omitempty"`
	// Env is the slot's environment, given to every release.
	Env map[string]string `json:"env,omitempty"`
	// Follow, when set, has the slot deploy its branch's new commits.
	Follow *Follow `json:"follow,omitempty"`
	// Push, when set, is a git push's release that serves while git has
	// not yet moved the branch.
	Push *PendingPush `json:"pending_push,omitempty"`
}

// PendingPush is a git push's release switched to when git locked and
// checked the branch (the reference-transaction hook's prepared state),
// before git moved it. Git may still fail the update, and an agent killed
// meanwhile never learns how it ended: the agent that starts next and
// finds one lets the branch's value decide which release serves.
type PendingPush struct {
	// Deploy is the push's deploy.
	Deploy string `json:"deploy"`
	// Release is the push's release, the slot's current one.
	Release string `json:"release"`
	// Branch and Commit are the branch git was asked to move and where.
	Branch string `json:"branch"`
	Commit string `json:"commit"`
	// Desired, Current and Env are the slot's before the switch: what
	// serves again when the branch did not move.
	Desired string            `json:"desired"`
	Current string            `json:"current,omitempty"`
	Env     map[string]string `json:"env,omitempty"`
}

// Follow is a slot following a branch of a repository (package follow).
type Follow struct {
	// Repo is the repository, as given: it may carry a token, so it is
	// never shown (source.Redact it).
	Repo string `json:"repo"`
	// Branch is the tracked branch; empty tracks the default branch.
	Branch string `json:"branch,omitempty"`
	// Interval is the time between two checks of the branch.
	Interval time.Duration `json:"interval"`
	// Since is when following was turned on or resumed: a manual deploy,
	// rollback or git push after it pauses following.
	Since time.Time `json:"since"`
	// Paused, when set, says why following is paused.
	Paused string `json:"paused,omitempty"`
	// FailedCommit is a commit whose deploy failed: it is not retried.
	FailedCommit string `json:"failed_commit,omitempty"`
	// Preview marks a slot taken by `slotagent preview`.
	Preview bool `json:"preview,omitempty"`
	// ReleaseOnDelete returns the slot to its placeholder when the branch
	// is deleted upstream.
	ReleaseOnDelete bool `json:"release_on_delete,omitempty"`
}

// Release is one runnable version of an app on disk.
type Release struct {
	// ID is unique within the slot and sorts by creation time.
	ID string `json:"id"`
	// Dir is the release's directory.
	Dir string `json:"dir"`
	// Command is the start command line, run with sh -c.
	Command string `json:"command"`
	// Env is the environment the release was created with.
	Env map[string]string `json:"env,omitempty"`
	// CreatedAt is when the release was created.
	CreatedAt time.Time `json:"created_at"`
	// Repo, Ref and Commit say where the code came from.
	Repo   string `json:"repo,omitempty"`
	Ref    string `json:"ref,omitempty"`
	Commit string `json:"commit,omitempty"`
	// Subject is the first line of the commit's message, masked and
	// length-capped as in the deploy's record.
	Subject string `json:"subject,omitempty"`
	// Language and Plan say what the app is and how it was installed,
	// built and started (buildpack's Plan.Describe); empty for releases of
	// older agents.
	Language string `json:"language,omitempty"`
	Plan     string `json:"plan,omitempty"`
	// Static is the folder the agent serves for a static site; Command is
	// then empty. SPA answers a path that names no file with index.html.
	Static string `json:"static,omitempty"`
	SPA    bool   `json:"spa,omitempty"`
	// Path lists folders put first on the app's PATH.
	Path []string `json:"path,omitempty"`
}

// New returns an empty state of the current version.
func New() *State {
	return &State{
		Version: Version,
		Slots:   map[string]*Slot{},
		Groups:  map[string]procgroup.Identity{},
	}
}

// Find returns the slot's release with that id, and whether it exists.
func (s *Slot) Find(id string) (Release, bool) {
	for _, r := range s.Releases {
		if r.ID == id {
			return r, true
		}
	}
	return Release{}, false
}

// Release returns the release id of slot, and whether it exists.
func (s *State) Release(slot, id string) (Release, bool) {
	sl := s.Slots[slot]
	if sl == nil {
		return Release{}, false
	}
	return sl.Find(id)
}

// KeptReleases lists the releases kept on disk, of every slot (in no
// particular order of slots).
func (s *State) KeptReleases() []Release {
	var out []Release
	for _, ss := range s.Slots {
		out = append(out, ss.Releases...)
	}
	return out
}

// Clone returns a deep copy of s, so it can be saved outside a lock.
func (s *State) Clone() *State {
	c := &State{
		Version: s.Version,
		Slots:   make(map[string]*Slot, len(s.Slots)),
		Groups:  maps.Clone(s.Groups),
		Members: maps.Clone(s.Members),
	}
	if c.Groups == nil {
		c.Groups = map[string]procgroup.Identity{}
	}
	if s.Agent != nil {
		a := *s.Agent
		c.Agent = &a
	}
	for name, sl := range s.Slots {
		if sl == nil {
			c.Slots[name] = nil
			continue
		}
		cs := *sl
		cs.Env = maps.Clone(sl.Env)
		if sl.Follow != nil {
			f := *sl.Follow
			cs.Follow = &f
		}
		if sl.Push != nil {
			p := *sl.Push
			p.Env = maps.Clone(p.Env)
			cs.Push = &p
		}
		if sl.Releases != nil {
			cs.Releases = make([]Release, len(sl.Releases))
			for i, r := range sl.Releases {
				r.Env = maps.Clone(r.Env)
				cs.Releases[i] = r
			}
		}
		c.Slots[name] = &cs
	}
	return c
}

// Validate checks that st is consistent: the version is current, every
// slot's Desired is known, release IDs are non-empty and unique within a
// slot, Current, when set, names one of the slot's releases, and a
// pending push names the current release and a previous one that exists.
func Validate(st *State) error {
	if st == nil {
		return errors.New("state is nil")
	}
	if st.Version != Version {
		return fmt.Errorf("unsupported state version %d (want %d)", st.Version, Version)
	}
	for name, sl := range st.Slots {
		if sl == nil {
			return fmt.Errorf("slot %q: no state", name)
		}
		if sl.Desired != DesiredPlaceholder && sl.Desired != DesiredRunning {
			return fmt.Errorf("slot %q: unknown desired state %q (want %q or %q)",
				name, sl.Desired, DesiredPlaceholder, DesiredRunning)
		}
		ids := make(map[string]bool, len(sl.Releases))
		for i, r := range sl.Releases {
			if r.ID == "" {
				return fmt.Errorf("slot %q: release %d has no ID", name, i)
			}
			if ids[r.ID] {
				return fmt.Errorf("slot %q: duplicate release ID %q", name, r.ID)
			}
			ids[r.ID] = true
		}
		if sl.Current != "" && !ids[sl.Current] {
			return fmt.Errorf("slot %q: current release %q is not among its releases", name, sl.Current)
		}
		if p := sl.Push; p != nil {
			switch {
			case p.Release != sl.Current:
				return fmt.Errorf("slot %q: the pending push's release %q is not the current one", name, p.Release)
			case p.Desired != DesiredPlaceholder && p.Desired != DesiredRunning:
				return fmt.Errorf("slot %q: the pending push: unknown desired state %q", name, p.Desired)
			case p.Current != "" && !ids[p.Current]:
				return fmt.Errorf("slot %q: the pending push's previous release %q is not among its releases", name, p.Current)
			}
		}
	}
	return nil
}

// Load reads the state file at path. A missing file gives an error wrapping
// fs.ErrNotExist. Load checks the JSON and the version but not the rest; call
// Validate for that. The maps of the result are never nil.
func Load(path string) (*State, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load state: %w", err)
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("load state %s: invalid JSON: %w", path, err)
	}
	if st.Version != Version {
		return nil, fmt.Errorf("load state %s: unsupported version %d (want %d)", path, st.Version, Version)
	}
	if st.Slots == nil {
		st.Slots = map[string]*Slot{}
	}
	if st.Groups == nil {
		st.Groups = map[string]procgroup.Identity{}
	}
	return &st, nil
}

// Save writes st to path atomically and durably, with mode 0600 (see
// atomicfile.Write: a temporary file ".<name>.tmp-*" synced and renamed over
// path, then the directory synced; the temporary files of a Save that was
// killed are removed first, so at most one can ever be left over). Save
// refuses a state that does not pass Validate. Only one process (the agent)
// may save a given path.
func Save(path string, st *State) error {
	if err := Validate(st); err != nil {
		return fmt.Errorf("save state %s: %w", path, err)
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("save state %s: encode: %w", path, err)
	}
	if err := atomicfile.Write(path, append(data, '\n'), 0o600); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}
