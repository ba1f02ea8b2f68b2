// Package procgroup identifies and kills process groups safely, and measures
// process trees. It reads /proc directly, so it works on Linux only.
package procgroup

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of the time fields in /proc/<pid>/stat.
// Linux fixes it at 100 on every architecture the agent runs on.
const clockTicks = 100

// statBufSize is more than /proc/<pid>/stat ever holds (52 numeric fields and
// a command name of at most 64 bytes).
const statBufSize = 2048

// Identity names a process beyond its PID: the PID plus the start time from
// /proc/<pid>/stat (field 22, clock ticks since boot), so a reused PID is
// never mistaken for it.
type Identity struct {
	// PID is the process ID.
	PID int `json:"pid"`
	// StartTime is when the process started, in clock ticks since boot.
	StartTime uint64 `json:"start_time"`
}

// stat holds the fields of /proc/<pid>/stat this package uses.
type stat struct {
	state     byte
	ppid      int
	pgrp      int
	utime     uint64 // clock ticks
	stime     uint64 // clock ticks
	startTime uint64 // clock ticks since boot
	rssPages  uint64
}

// Lookup returns the identity of the running process pid.
// A process that does not exist gives an error wrapping fs.ErrNotExist.
func Lookup(pid int) (Identity, error) {
	st, err := readStat(pid)
	if err != nil {
		return Identity{}, fmt.Errorf("look up process %d: %w", pid, err)
	}
	return Identity{PID: pid, StartTime: st.startTime}, nil
}

// Alive reports whether the process still exists with the same start time and
// is not a zombie.
func (id Identity) Alive() bool {
	if id.PID <= 0 {
		return false
	}
	st, err := readStat(id.PID)
	return err == nil && st.startTime == id.StartTime && st.state != 'Z' && st.state != 'X'
}

// KillGroup sends sig to the process group led by id (kill(-pid, sig)), but
// only when the leader still exists with the same start time and still leads
// its own group. It returns false and a nil error when nothing was sent
// because the leader is gone or does not match. PIDs 0 and 1 are refused,
// since kill(0) and kill(-1) would signal the caller's group or every process.
// The check and the kill are two steps; a PID reused in between (the leader
// exiting and a new group leader getting its PID within microseconds) is
// not guarded against.
func KillGroup(id Identity, sig syscall.Signal) (bool, error) {
	if id.PID <= 1 {
		return false, nil
	}
	st, err := readStat(id.PID)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return false, fmt.Errorf("kill group %d: %w", id.PID, err)
	}
	if st.startTime != id.StartTime || st.pgrp != id.PID {
		return false, nil
	}
	if err := syscall.Kill(-id.PID, sig); err != nil {
		if errors.Is(err, syscall.ESRCH) {
			return false, nil
		}
		return false, fmt.Errorf("kill group %d with %v: %w", id.PID, sig, err)
	}
	return true, nil
}

// Kill sends sig to the process id when it still exists with the same
// start time and is not a zombie, and reports whether it did. PIDs 0 and 1
// are refused. As with KillGroup, a PID reused between the check and the
// kill is not guarded against.
func Kill(id Identity, sig syscall.Signal) bool {
	if id.PID <= 1 || !id.Alive() {
		return false
	}
	return syscall.Kill(id.PID, sig) == nil
}

// GroupAlive reports whether any process is left in process group pgid
// (kill(-pgid, 0) succeeds, or fails only for lack of permission).
// Zombies count until their parent reaps them.
func GroupAlive(pgid int) bool {
	if pgid <= 1 {
		return false
	}
	err := syscall.Kill(-pgid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// Descendants returns every descendant PID of pid (children, grandchildren
// and so on), excluding pid itself, in breadth-first order. It takes one scan
// of /proc, so processes born or reparented during the scan may be missed.
// It returns nil when /proc cannot be read.
func Descendants(pid int) []int {
	procs, _ := scan()
	return descendants(childrenOf(procs), pid)
}

// Usage is the resources of a whole process tree.
type Usage struct {
	// RSS is the resident set size in bytes, summed over the root and its
	// descendants.
	RSS uint64
	// CPUTime is user plus system CPU time, summed over the same processes.
	CPUTime time.Duration
}

// TreeUsage measures pid and all its descendants. It fails only when pid
// itself is gone; descendants that exit during the scan are skipped.
func TreeUsage(pid int) (Usage, error) {
	snap, err := TakeSnapshot()
	if err != nil {
		return Usage{}, fmt.Errorf("tree usage of %d: %w", pid, err)
	}
	return snap.TreeUsage(pid)
}

// Snapshot is one scan of /proc: the parent and resource use of every
// process, so that several process trees are measured for the cost of one
// scan.
type Snapshot struct {
	procs    map[int]stat
	children map[int][]int // PID → PIDs of its children
}

// TakeSnapshot scans /proc. Processes that exit during the scan are
// skipped.
func TakeSnapshot() (*Snapshot, error) {
	procs, err := scan()
	if err != nil {
		return nil, err
	}
	return &Snapshot{procs: procs, children: childrenOf(procs)}, nil
}

// TreeUsage measures pid and all its descendants as the snapshot found
// them. It fails when pid was not in the snapshot.
func (s *Snapshot) TreeUsage(pid int) (Usage, error) {
	root, ok := s.procs[pid]
	if !ok {
		return Usage{}, fmt.Errorf("tree usage of %d: no such process: %w", pid, os.ErrNotExist)
	}
	page := uint64(os.Getpagesize())
	var ticks uint64
	var u Usage
	add := func(st stat) {
		u.RSS += st.rssPages * page
		ticks += st.utime + st.stime
	}
	add(root)
	for _, d := range descendants(s.children, pid) {
		add(s.procs[d])
	}
	u.CPUTime = time.Duration(ticks) * (time.Second / clockTicks)
	return u, nil
}

// childrenOf maps each PID in procs to the PIDs of its children.
func childrenOf(procs map[int]stat) map[int][]int {
	children := make(map[int][]int)
	for p, st := range procs {
		children[st.ppid] = append(children[st.ppid], p)
	}
	return children
}

// descendants walks children breadth-first from pid.
func descendants(children map[int][]int, pid int) []int {
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			if c != pid { // guard against a cycle through pid
				out = append(out, c)
				queue = append(queue, c)
			}
		}
	}
	return out
}

// scan reads /proc/<pid>/stat for every process. Processes that exit during
// the scan are skipped. It uses raw system calls relative to an open /proc,
// which is several times faster than os.Open per file.
func scan() (map[int]stat, error) {
	dir, err := os.Open("/proc")
	if err != nil {
		return nil, fmt.Errorf("open /proc: %w", err)
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("list /proc: %w", err)
	}
	dirfd := int(dir.Fd())
	procs := make(map[int]stat, len(names))
	buf := make([]byte, statBufSize)
	for _, name := range names {
		if name == "" || name[0] < '0' || name[0] > '9' {
			continue
		}
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		st, err := readStatAt(dirfd, name+"/stat", buf)
		if err != nil {
			continue
		}
		procs[pid] = st
	}
	return procs, nil
}

// readStat reads and parses /proc/<pid>/stat. A process that is gone gives
// an error wrapping fs.ErrNotExist.
func readStat(pid int) (stat, error) {
	if pid <= 0 {
		return stat{}, fmt.Errorf("invalid pid %d: %w", pid, os.ErrNotExist)
	}
	// The path is absolute, so openat ignores the directory descriptor.
	return readStatAt(-1, "/proc/"+strconv.Itoa(pid)+"/stat", make([]byte, statBufSize))
}

// readStatAt reads and parses the stat file at path relative to dirfd,
// using buf as scratch space. A process that is gone gives an error
// wrapping fs.ErrNotExist.
func readStatAt(dirfd int, path string, buf []byte) (stat, error) {
	fd, err := openat(dirfd, path)
	if err != nil {
		return stat{}, fmt.Errorf("open %s: %w", path, err)
	}
	defer syscall.Close(fd)
	n := 0
	for n < len(buf) {
		m, err := syscall.Read(fd, buf[n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			if err == syscall.ESRCH { // exited after the open
				err = fmt.Errorf("%w: %w", os.ErrNotExist, err)
			}
			return stat{}, fmt.Errorf("read %s: %w", path, err)
		}
		if m == 0 {
			break
		}
		n += m
	}
	st, err := parseStat(buf[:n])
	if err != nil {
		return stat{}, fmt.Errorf("parse %s: %w", path, err)
	}
	return st, nil
}

// openat opens path relative to dirfd for reading, retrying on EINTR.
func openat(dirfd int, path string) (int, error) {
	for {
		fd, err := syscall.Openat(dirfd, path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != syscall.EINTR {
			return fd, err
		}
	}
}

// parseStat parses the contents of /proc/<pid>/stat. The command name in
// field 2 may contain spaces and parentheses, so fields are counted from
// after the last ')'.
func parseStat(b []byte) (stat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return stat{}, errors.New("no ')' after the command name")
	}
	var f [22][]byte // fields 3 to 24: field n is f[n-3]
	rest := b[i+1:]
	for k := range f {
		rest = bytes.TrimLeft(rest, " ")
		end := bytes.IndexAny(rest, " \n")
		if end < 0 {
			end = len(rest)
		}
		if end == 0 {
			return stat{}, fmt.Errorf("only %d fields", k+2)
		}
		f[k], rest = rest[:end], rest[end:]
	}
	if len(f[0]) != 1 {
		return stat{}, fmt.Errorf("bad state %q", f[0])
	}
	var err error
	num := func(field int) uint64 {
		n, ok := parseUint(f[field-3])
		if !ok && err == nil {
			err = fmt.Errorf("field %d: bad number %q", field, f[field-3])
		}
		return n
	}
	st := stat{
		state:     f[0][0],
		ppid:      int(num(4)),
		pgrp:      int(num(5)),
		utime:     num(14),
		stime:     num(15),
		startTime: num(22),
		rssPages:  num(24),
	}
	if err != nil {
		return stat{}, err
	}
	return st, nil
}

// parseUint parses a decimal number without allocating.
func parseUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}
