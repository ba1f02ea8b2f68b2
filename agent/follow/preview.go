package follow

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/coder-slots/coder-slots/agent/source"
	"github.com/coder-slots/coder-slots/agent/state"
)

// ErrNoFreeSlot is returned by Preview when every slot holds something;
// its message says what each one holds.
var ErrNoFreeSlot = errors.New("no free slot")

// Preview has a slot follow branch of repo: the slot named, or else a
// free one (serving its placeholder, following nothing). Its first deploy
// starts at once. It returns the slot's name.
func (f *Follower) Preview(repo, branch, name string, interval time.Duration, releaseOnDelete bool) (string, Status, error) {
	if err := source.ValidateRepo(repo); err != nil {
		return "", Status{}, invalid("%v", err)
	}
	if err := source.ValidateBranch(branch); err != nil {
		return "", Status{}, invalid("%v", err)
	}
	f.previewMu.Lock()
	defer f.previewMu.Unlock()
	if name == "" {
		var held []string
		for _, n := range f.names {
			ss := f.store.Slot(n)
			if ss.Desired != state.DesiredRunning && ss.Follow == nil && isFree(f.d.Free(n)) {
				name = n
				break
			}
			held = append(held, n+": "+describe(ss))
		}
		if name == "" {
			return "", Status{}, fmt.Errorf("%w: %s; name one with --slot (its app is replaced) or free one with slotagent stop SLOT and slotagent follow SLOT --off",
				ErrNoFreeSlot, strings.Join(held, "; "))
		}
	}
	st, err := f.Set(name, Settings{Repo: repo, Branch: branch, Interval: interval, Preview: true, ReleaseOnDelete: releaseOnDelete})
	return name, st, err
}

func isFree(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// describe says what a slot holds, for the no-free-slot error.
func describe(ss state.Slot) string {
	var what string
	if cur, ok := ss.Find(ss.Current); ok && ss.Desired == state.DesiredRunning {
		src := cur.Dir
		if cur.Repo != "" {
			src = cur.Repo
			if cur.Ref != "" {
				src += " " + cur.Ref
			}
		}
		what = fmt.Sprintf("serves %s (commit %s)", src, short(cur.Commit))
	} else {
		what = "serves its placeholder"
	}
	if fw := ss.Follow; fw != nil {
		what += ", follows " + branchName(fw.Branch) + " of " + source.Redact(fw.Repo)
		if fw.Paused != "" {
			what += " (paused)"
		}
	} else if ss.Desired != state.DesiredRunning {
		what += " (busy)"
	}
	return what
}
