// Package legacy reads the old setup's slots.json so its deployed slots can
// be deployed again by slotagent (`slotagent import-legacy`).
package legacy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"sort"
	"strconv"
)

// Slot is one slot of the old slots.json.
type Slot struct {
	Name        string
	Repository  string
	Branch      string
	Environment map[string]string
	Status      string
}

// deployedStatuses are the old statuses of a slot that had an app.
var deployedStatuses = []string{"deployed", "running", "online", "active"}

// emptyStatuses are the old statuses of a slot without an app.
var emptyStatuses = []string{"", "empty", "available", "placeholder", "stopped", "idle"}

// Deployed reports whether the slot had an app running.
func (s Slot) Deployed() bool { return slices.Contains(deployedStatuses, s.Status) }

type fileSlot struct {
	Repository  string                     `json:"repository"`
	Branch      string                     `json:"branch"`
	Environment map[string]json.RawMessage `json:"environment"`
	Status      string                     `json:"status"`
}

// Read parses path and returns its slots sorted by name. known lists the
// valid slot names. Every problem is an error naming the file and the slot.
func Read(path string, known []string) ([]Slot, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var doc struct {
		Slots map[string]fileSlot `json:"slots"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s is not valid JSON: %w", path, err)
	}
	if doc.Slots == nil {
		return nil, fmt.Errorf("%s has no \"slots\" object", path)
	}
	var out []Slot
	for name, fs := range doc.Slots {
		if !slices.Contains(known, name) {
			return nil, fmt.Errorf("%s: unknown slot %q (slots are %v)", path, name, known)
		}
		s := Slot{Name: name, Repository: fs.Repository, Branch: fs.Branch, Status: fs.Status}
		if !s.Deployed() && !slices.Contains(emptyStatuses, s.Status) {
			return nil, fmt.Errorf("%s: slot %s has an unknown status %q", path, name, s.Status)
		}
		if s.Deployed() && s.Repository == "" {
			return nil, fmt.Errorf("%s: slot %s is %s but has no repository", path, name, s.Status)
		}
		env, err := stringEnv(fs.Environment)
		if err != nil {
			return nil, fmt.Errorf("%s: slot %s: %w", path, name, err)
		}
		s.Environment = env
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// stringEnv turns JSON scalars into strings, as the old ecosystem file did.
func stringEnv(raw map[string]json.RawMessage) (map[string]string, error) {
	env := map[string]string{}
	for k, v := range raw {
		v = bytes.TrimSpace(v)
		var s string
		if err := json.Unmarshal(v, &s); err == nil {
			env[k] = s
			continue
		}
		var n json.Number
		dec := json.NewDecoder(bytes.NewReader(v))
		dec.UseNumber()
		if err := dec.Decode(&n); err == nil {
			env[k] = n.String()
			continue
		}
		if b, err := strconv.ParseBool(string(v)); err == nil {
			env[k] = strconv.FormatBool(b)
			continue
		}
		return nil, fmt.Errorf("environment %s is not a string, number or boolean", k)
	}
	return env, nil
}
