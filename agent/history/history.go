// Package history keeps what happened to each slot recently: requests by
// response class, their latency, the app's CPU and memory, in fixed-size rings of 10-second buckets (the last hour) and of
// 1-minute buckets (the last 24 hours), and the slot's deploys, rollbacks,
// crashes, stops and starts. Memory is bounded whatever the traffic,
// recording a request allocates nothing, and buckets are counted on the
// monotonic clock, so setting the machine's time back corrupts nothing.
// Opened on a folder (Open), each slot's history is a file mapped into
// memory, so it survives the agent's and the workspace's restarts.
package history

import (
	"math/bits"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The rings: Fine covers the last hour, Coarse the last 24 hours.
const (
	FineStep   = 10 * time.Second
	FineLen    = 360
	CoarseStep = time.Minute
	CoarseLen  = 1440
	// MaxEvents is how many events a slot keeps (the oldest go first).
	MaxEvents = 64
	// maxRef and maxDetail bound an event's texts (longer ones are cut).
	maxRef    = 32
	maxDetail = 45
	// latencyBuckets is the latency histogram's size: below 0.5 ms, then
	// doubling bounds (0.5–1 ms, 1–2 ms … 4.096–8.192 s), then the rest.
	latencyBuckets = 16
	latencyBase    = 500 * time.Microsecond
)

// BytesPerSlot is the memory a Slot takes, whatever the traffic: 100 bytes
// per bucket × (360 + 1440) buckets (the rings), 64 events of 88 bytes, a
// 48-byte header (the store, which is also the file's layout), and the
// Slot's own few words (checked by a test). A ring's pages become resident
// as its buckets are first written: after an hour the 36 KB of the
// 10-second ring, after a day all 180 KB.
const BytesPerSlot = 185768

// Class is what a response was: its status class, or the slot's own 503
// (the app was down or failed before answering).
type class uint8

const (
	class2xx class = iota
	class3xx
	class4xx
	class5xx
	classUnavailable
	classes
)

// bucket is one time step of a slot: 100 bytes.
type bucket struct {
	// n is 1 + the bucket's number since the history began; 0 never written.
	n       uint32
	classes [classes]uint32
	// latency counts every request (1xx included) by time to its header.
	latency [latencyBuckets]uint32
	// cpuSum and samples make the mean CPU (% of one core) of the samples.
	cpuSum  float32
	samples uint32
	// rssKiB is the largest RSS sampled in the bucket.
	rssKiB uint32
}

// Kind is the kind of an event.
type Kind string

// The events a slot records.
const (
	Deploy   Kind = "deploy"
	Rollback Kind = "rollback"
	Crash    Kind = "crash"
	Restart  Kind = "restart"
	Stop     Kind = "stop"
	Start    Kind = "start"
)

// kinds numbers the kinds in the store (0 is no event): only add at the end.
var kinds = [...]Kind{1: Deploy, 2: Rollback, 3: Crash, 4: Restart, 5: Stop, 6: Start}

// event is something that happened to a slot, at a time on the
// history's monotonic clock: 88 bytes, with its texts inline so that it
// can live in the store.
type event struct {
	at        time.Duration
	kind      uint8 // an index of kinds
	refLen    uint8
	detailLen uint8
	ref       [maxRef]byte // the deploy record's id, when there is one
	detail    [maxDetail]byte
}

// newEvent makes an event, cutting texts that are too long.
func newEvent(at time.Duration, kind Kind, ref, detail string) event {
	e := event{at: at}
	for i, k := range kinds {
		if k == kind && i > 0 {
			e.kind = uint8(i)
		}
	}
	e.refLen = uint8(copy(e.ref[:], ref))
	e.detailLen = uint8(copy(e.detail[:], detail))
	return e
}

// public is the event as Read returns it; ok is false for a slot of the
// store that holds no event (or one this version does not know).
func (e *event) public(label func(time.Duration) time.Time) (Event, bool) {
	if e.kind == 0 || int(e.kind) >= len(kinds) {
		return Event{}, false
	}
	return Event{Kind: kinds[e.kind], At: label(e.at),
		DeployID: string(e.ref[:min(int(e.refLen), maxRef)]), Detail: string(e.detail[:min(int(e.detailLen), maxDetail)])}, true
}

// Clock tells the time. Now must carry a monotonic reading (time.Now's
// does): the buckets are counted from its differences, which the
// machine's clock being set does not change. Wall is the machine's clock,
// only used to label times for people.
type Clock interface {
	Now() time.Time
	Wall() time.Time
}

// systemClock is the real Clock.
type systemClock struct{}

func (systemClock) Now() time.Time  { return time.Now() }
func (systemClock) Wall() time.Time { return time.Now() }

// History is the history of every slot.
type History struct {
	slots map[string]*Slot
}

// New makes an empty history of the named slots on the system clock, kept
// in memory only.
func New(names []string) *History { return NewWithClock(names, systemClock{}) }

// NewWithClock is New with another clock (tests).
func NewWithClock(names []string, c Clock) *History {
	h := &History{slots: make(map[string]*Slot, len(names))}
	base := c.Now()
	for _, name := range names {
		mem, st := anonStore()
		h.slots[name] = newSlot(c, base, mem, st)
	}
	return h
}

// Slot is the history of the named slot, or nil for an unknown name.
func (h *History) Slot(name string) *Slot { return h.slots[name] }

// Slot is one slot's history. Its methods are safe for concurrent use.
type Slot struct {
	clock Clock
	base  time.Time // when the history began; times are kept as offsets from it
	mu    sync.Mutex
	store *store
	mem   []byte // the store's mapping (nil when it is on the heap)
	file  bool   // mem maps the slot's history file
}

// store is a slot's buckets and events: 185 KB, mapped outside the Go
// heap when the system allows (from a file, or anonymous memory), so that
// they count in the agent's RSS only as their pages are first written,
// and not in the garbage collector's heap goal (which would let that much
// more garbage pile up under load). It holds no pointers: its bytes are
// the history file's format.
type store struct {
	header header
	fine   [FineLen]bucket
	coarse [CoarseLen]bucket
	events [MaxEvents]event
}

// anonStore maps an anonymous store, or makes one on the heap when the
// system refuses (the same, less frugal).
func anonStore() ([]byte, *store) {
	mem, err := unix.Mmap(-1, 0, int(unsafe.Sizeof(store{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, new(store)
	}
	return mem, (*store)(unsafe.Pointer(&mem[0]))
}

// newSlot makes a slot's history on st, mapped as mem (unmapped when the
// slot is garbage).
func newSlot(c Clock, base time.Time, mem []byte, st *store) *Slot {
	s := &Slot{clock: c, base: base, store: st, mem: mem}
	if mem != nil {
		runtime.AddCleanup(s, func(mem []byte) { _ = unix.Munmap(mem) }, mem)
	}
	return s
}

// Request records one response: its status code, when its request arrived
// (a time.Now, with its monotonic reading), the time to its header, and
// whether the slot answered it itself (its 503 while the app is down). It
// reads no clock and allocates nothing.
func (s *Slot) Request(code int, start time.Time, took time.Duration, local bool) {
	c := classOf(code, local)
	l := latencyBucket(took)
	now := start.Sub(s.base) + took
	s.mu.Lock()
	s.store.header.last = max(s.store.header.last, now)
	for _, b := range [2]*bucket{at(s.store.fine[:], FineStep, now), at(s.store.coarse[:], CoarseStep, now)} {
		if c < classes {
			b.classes[c]++
		}
		b.latency[l]++
	}
	s.mu.Unlock()
}

// Sample records the app's CPU (% of one core) and RSS (bytes) now.
func (s *Slot) Sample(cpu float64, rss uint64) {
	kib := uint32(min(rss>>10, 1<<32-1))
	s.mu.Lock()
	now := s.elapsed()
	s.store.header.last = max(s.store.header.last, now)
	for _, b := range [2]*bucket{at(s.store.fine[:], FineStep, now), at(s.store.coarse[:], CoarseStep, now)} {
		b.cpuSum += float32(cpu)
		b.samples++
		b.rssKiB = max(b.rssKiB, kib)
	}
	s.mu.Unlock()
}

// Mark records an event that happened ago (0: now); ref is its deploy
// record's id, if any, and detail a short text such as an exit status.
func (s *Slot) Mark(kind Kind, ref, detail string, ago time.Duration) {
	s.mu.Lock()
	at := s.elapsed() - max(ago, 0)
	h := &s.store.header
	s.store.events[h.events%MaxEvents] = newEvent(at, kind, ref, detail)
	h.events++
	h.last = max(h.last, at)
	s.mu.Unlock()
}

// elapsed is the time since the history began, on the monotonic clock.
func (s *Slot) elapsed() time.Duration { return s.clock.Now().Sub(s.base) }

// at is the bucket of ring for the time now, emptied first when it still
// holds an older bucket (one a full turn of the ring ago).
func at(ring []bucket, step, now time.Duration) *bucket {
	n := uint32(max(now, 0) / step)
	b := &ring[n%uint32(len(ring))]
	if b.n != n+1 {
		*b = bucket{n: n + 1}
	}
	return b
}

// classOf is the class of a response; classes for one that counts in no
// class (1xx, such as a WebSocket upgrade).
func classOf(code int, local bool) class {
	switch {
	case local:
		return classUnavailable
	case code >= 200 && code < 600:
		return class(code/100 - 2)
	default:
		return classes
	}
}

// latencyBucket is the histogram bucket of d.
func latencyBucket(d time.Duration) int {
	return min(bits.Len64(uint64(max(d, 0)/latencyBase)), latencyBuckets-1)
}

// latencyBounds are the bounds of histogram bucket i; the last one's upper
// bound is its lower bound (nothing is known above it).
func latencyBounds(i int) (lo, hi time.Duration) {
	if i > 0 {
		lo = latencyBase << (i - 1)
	}
	hi = latencyBase << i
	if i == latencyBuckets-1 {
		hi = lo
	}
	return lo, hi
}
