package history

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The history file: a store's bytes as they are in memory (the machine's
// byte order, which the header records), so that the file is the mapping.
const (
	fileMagic   = "slothist"
	fileVersion = 1
	byteOrder   = 0x01020304
	// fileSuffix names a slot's file in the folder: <slot>.hist.
	fileSuffix = ".hist"
	// maxAge is the oldest history a file may start: older is not a history
	// this agent wrote (or a clock gone very wrong).
	maxAge = 20 * 365 * 24 * time.Hour
)

// header is the first bytes of a store, and of its file.
type header struct {
	magic   [8]byte
	order   uint32 // byteOrder, as the writer's machine stores it
	version uint32
	size    uint64 // the store's size: what the version's geometry makes
	since   int64  // when the history began, Unix nanoseconds of the wall clock
	events  uint64 // events recorded in all; the store holds the last MaxEvents
	// last is the latest time written (a bucket or an event), on the
	// history's clock.
	last time.Duration
}

// Open makes the history of the named slots on the system clock, each
// slot's kept in the file <dir>/<slot>.hist and mapped into memory, so it
// survives the agent's restarts. A file that cannot be used (torn, of
// another version or another program) is moved aside to <file>.ignored
// and the slot's history starts again; a folder where no file can be made
// leaves the history in memory. Either is reported to warn, never fatal.
func Open(dir string, names []string, warn func(string)) *History {
	return OpenWithClock(dir, names, systemClock{}, warn)
}

// OpenWithClock is Open with another clock (tests).
func OpenWithClock(dir string, names []string, c Clock, warn func(string)) *History {
	h := &History{slots: make(map[string]*Slot, len(names))}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		warn(fmt.Sprintf("history is kept in memory only: %v", err))
		return NewWithClock(names, c)
	}
	for _, name := range names {
		s, err := openSlot(filepath.Join(dir, name+fileSuffix), c, warn)
		if err != nil {
			warn(fmt.Sprintf("slot %s's history is kept in memory only: %v", name, err))
			mem, st := anonStore()
			s = newSlot(c, c.Now(), mem, st)
		}
		h.slots[name] = s
	}
	return h
}

// Sync writes every file's changes to the disk (the mappings are written
// back by the system anyway; Sync makes it happen now, before a stop).
func (h *History) Sync() error {
	var errs []error
	for name, s := range h.slots {
		if s.file {
			s.mu.Lock()
			err := unix.Msync(s.mem, unix.MS_SYNC)
			s.mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("sync slot %s's history: %w", name, err))
			}
		}
	}
	return errors.Join(errs...)
}

// openSlot maps a slot's history file, made when missing; one that cannot
// be used is moved aside (reported to warn) and made again.
func openSlot(path string, c Clock, warn func(string)) (*Slot, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open history file: %w", err)
	}
	defer f.Close() // the mapping outlives the descriptor
	size := int64(unsafe.Sizeof(store{}))
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat history file: %w", err)
	}
	if fi.Size() != 0 {
		s, why, err := mapExisting(f, fi.Size(), c)
		if s != nil || err != nil {
			return s, err
		}
		aside := path + ".ignored"
		if err := os.Rename(path, aside); err != nil {
			return nil, fmt.Errorf("history file %s is unusable (%s) and cannot be moved aside: %w", path, why, err)
		}
		warn(fmt.Sprintf("history file %s was unusable (%s): moved to %s, the slot's history starts again", path, why, aside))
		return openSlot(path, c, warn)
	}
	// A new file: written whole (so that its blocks exist and a full disk
	// fails here, not as a fault on a write to the mapping later), with
	// its header, then synced.
	var st store
	now := c.Wall()
	st.header = header{order: byteOrder, version: fileVersion, size: uint64(size), since: now.UnixNano()}
	copy(st.header.magic[:], fileMagic)
	if _, err := f.WriteAt(unsafe.Slice((*byte)(unsafe.Pointer(&st)), size), 0); err != nil {
		return nil, fmt.Errorf("write history file: %w", err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("sync history file: %w", err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map history file: %w", err)
	}
	s := newSlot(c, c.Now(), mem, (*store)(unsafe.Pointer(&mem[0])))
	s.file = true
	return s, nil
}

// mapExisting maps a history file that has content. It returns the slot,
// or why the file is not a history this version can use (then nothing is
// mapped), or an error of the system.
func mapExisting(f *os.File, size int64, c Clock) (*Slot, string, error) {
	want := int64(unsafe.Sizeof(store{}))
	var h header
	hb := unsafe.Slice((*byte)(unsafe.Pointer(&h)), unsafe.Sizeof(h))
	if size < int64(len(hb)) {
		return nil, fmt.Sprintf("%d bytes, shorter than a header", size), nil
	}
	if _, err := f.ReadAt(hb, 0); err != nil {
		return nil, "", fmt.Errorf("read history file: %w", err)
	}
	switch {
	case string(h.magic[:]) != fileMagic:
		return nil, "not a slotagent history file", nil
	case h.order != byteOrder:
		return nil, "written by a machine of another byte order", nil
	case h.version != fileVersion:
		return nil, fmt.Sprintf("format version %d, this agent reads version %d", h.version, fileVersion), nil
	case h.size != uint64(want) || size != want:
		return nil, fmt.Sprintf("%d bytes, its header says %d, version %d has %d", size, h.size, fileVersion, want), nil
	}
	since := time.Unix(0, h.since)
	wall := c.Wall()
	if wall.Sub(since) > maxAge || since.Sub(wall) > maxAge {
		return nil, fmt.Sprintf("it starts at %s", since.UTC().Format(time.RFC3339)), nil
	}
	// Its blocks exist (it was written whole), unless something else
	// truncated and grew it: ask for them, so a full disk is no fault later.
	if err := unix.Fallocate(int(f.Fd()), 0, 0, want); err != nil && !errors.Is(err, unix.EOPNOTSUPP) {
		return nil, "", fmt.Errorf("allocate history file: %w", err)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(want), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, "", fmt.Errorf("map history file: %w", err)
	}
	st := (*store)(unsafe.Pointer(&mem[0]))
	// The history goes on at the wall clock's distance from its start; a
	// clock set back while the agent was down goes on from its last entry
	// instead, so nothing recorded is overwritten or mixed up.
	elapsed := max(wall.Sub(since), st.header.last)
	s := newSlot(c, c.Now().Add(-elapsed), mem, st)
	s.file = true
	return s, "", nil
}
