package procgroup

import (
	"maps"
	"strconv"
	"sync"
)

// Registry keeps the identities of running process groups that no
// supervisor owns (the commands of a deploy: git, the package manager, the
// build), so that they can be recorded with the others and killed by the
// next agent after an unclean stop. It is a reaper.Tracker.
type Registry struct {
	prefix  string
	record  func()
	mu      sync.Mutex
	groups  map[string]Identity
	changes chan struct{}
}

// NewRegistry returns an empty registry naming its groups prefix+PID.
func NewRegistry(prefix string) *Registry {
	return &Registry{prefix: prefix, groups: map[string]Identity{}, changes: make(chan struct{}, 1)}
}

// RecordWith makes record the way a new group is recorded: Started calls
// it, and waits until it returns, before the command runs (see
// reaper.Tracker); record must save what Groups returns durably. Without
// it a new group is signalled on Changes, as its end always is. Call it
// before any command starts.
func (r *Registry) RecordWith(record func()) { r.record = record }

// Started records the group whose leader is pgid (when it still runs) and
// returns the function that forgets it.
func (r *Registry) Started(pgid int) (ended func()) {
	id, err := Lookup(pgid)
	if err != nil {
		return func() {}
	}
	name := r.prefix + strconv.Itoa(pgid)
	r.mu.Lock()
	r.groups[name] = id
	r.mu.Unlock()
	if r.record != nil {
		r.record()
	} else {
		r.signal()
	}
	return func() {
		r.mu.Lock()
		delete(r.groups, name)
		r.mu.Unlock()
		r.signal()
	}
}

// Groups returns the groups running now, by name.
func (r *Registry) Groups() map[string]Identity {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.groups)
}

// Changes delivers a signal (coalesced) whenever a group is recorded or
// forgotten.
func (r *Registry) Changes() <-chan struct{} { return r.changes }

func (r *Registry) signal() {
	select {
	case r.changes <- struct{}{}:
	default:
	}
}
