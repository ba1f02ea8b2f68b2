// Package logs writes a supervised process's output to timestamped,
// size-rotated log files and serves tail and follow.
package logs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"gopkg.in/natefinch/lumberjack.v2"
)

const (
	maxLine    = 64 * 1024 // longest line written; longer input is cut into pieces of this size
	tailBlock  = 64 * 1024 // block size Tail reads backwards with
	followBuf  = 1024      // buffered lines per Follow subscriber
	timeLayout = "2006-01-02T15:04:05.000Z"
	maskText   = "********"
	minSecret  = 4 // shorter values are never masked
	// minLongSecret is the length from which SecretValues takes the value
	// of any key.
	minLongSecret = 8
	combinedIdx   = 2 // index of the combined file in Sink.files
)

// ErrClosed is returned by operations on a closed Sink.
var ErrClosed = errors.New("logs: sink closed")

// Options configures rotation. Zero values mean the defaults: 10 MB, keep 5, gzip on.
type Options struct {
	MaxSizeMB  int
	MaxBackups int
	NoCompress bool
	// NoRotate writes plain files that grow without limit, for logs whose
	// owner prunes them (a deploy's). A rotating file keeps a goroutine for
	// the process's life once written to (lumberjack's Close does not end
	// it), so short-lived sinks must not rotate.
	NoRotate bool
}

// Stream names one of a process's outputs.
type Stream int

const (
	// Stdout is the process's standard output, written to <name>-out.log.
	Stdout Stream = iota
	// Stderr is the process's standard error, written to <name>-error.log.
	Stderr
)

// Sink is the set of log files of one process name: <dir>/<name>-out.log
// (stdout), <dir>/<name>-error.log (stderr), <dir>/<name>.log (both).
type Sink struct {
	paths [3]string // out, error, combined

	mu        sync.Mutex // serialises writes, publishing and subscribing
	files     [3]io.WriteCloser
	masker    *strings.Replacer   // nil when there are no secrets
	secrets   map[string]bool     // the values masker masks
	secretsOf map[string][]string // owner → its values (SetSecretsOf)
	subs      map[*subscriber]struct{}
	closed    bool
}

type subscriber struct {
	ch      chan string
	skipped int
}

// Files are the paths of the log files of process name in dir: its
// stdout, its stderr and both.
func Files(dir, name string) [3]string {
	return [3]string{filepath.Join(dir, name+"-out.log"), filepath.Join(dir, name+"-error.log"), filepath.Join(dir, name+".log")}
}

// Open prepares the log files of process name in dir, creating dir (0700)
// and the files (0600) if needed.
func Open(dir, name string, opt Options) (*Sink, error) {
	if name == "" || strings.ContainsAny(name, `/\`) {
		return nil, fmt.Errorf("logs: invalid process name %q", name)
	}
	if opt.MaxSizeMB <= 0 {
		opt.MaxSizeMB = 10
	}
	if opt.MaxBackups <= 0 {
		opt.MaxBackups = 5
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("logs: %w", err)
	}
	s := &Sink{subs: make(map[*subscriber]struct{})}
	for i, p := range Files(dir, name) {
		f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			s.closeFiles()
			return nil, fmt.Errorf("logs: %w", err)
		}
		s.paths[i] = p
		if opt.NoRotate {
			s.files[i] = f
			continue
		}
		f.Close()
		s.files[i] = &lumberjack.Logger{
			Filename:   p,
			MaxSize:    opt.MaxSizeMB,
			MaxBackups: opt.MaxBackups,
			Compress:   !opt.NoCompress,
			LocalTime:  false,
		}
	}
	return s, nil
}

// Pipe creates an OS pipe whose write end w is meant for a child process
// (the caller closes its own copy after starting the child). Everything
// written to it is logged line by line to stream's file and the combined
// file. done closes once all writers have closed w and every line is
// written; a final line without "\n" is written as a line too.
func (s *Sink) Pipe(stream Stream) (w *os.File, done <-chan struct{}, err error) {
	if stream != Stdout && stream != Stderr {
		return nil, nil, fmt.Errorf("logs: invalid stream %d", stream)
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return nil, nil, ErrClosed
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("logs: %w", err)
	}
	ch := make(chan struct{})
	go s.pump(r, stream, ch)
	return w, ch, nil
}

// pump reads r until EOF and logs every line. Lines longer than maxLine
// arrive as ErrBufferFull pieces; the "\n" that ends such a line right
// after a cut is not logged as an extra empty line.
func (s *Sink) pump(r *os.File, stream Stream, done chan<- struct{}) {
	defer close(done)
	defer r.Close()
	br := bufio.NewReaderSize(r, maxLine)
	cut := false
	for {
		b, err := br.ReadSlice('\n')
		switch {
		case len(b) == 0:
		case b[len(b)-1] == '\n':
			if !cut || len(b) > 1 {
				s.write(stream, [][]byte{b[:len(b)-1]})
			}
			cut = false
		default: // a full buffer (a cut) or the final partial line
			s.write(stream, [][]byte{b})
			cut = err == bufio.ErrBufferFull
		}
		if err != nil && err != bufio.ErrBufferFull {
			return // io.EOF, or a read error: nothing more can arrive
		}
	}
}

// Writer returns a writer for the agent's own messages about the process.
// Each Write may hold several lines; a trailing part without "\n" is
// written as a line of its own. Lines are handled as in Pipe.
func (s *Sink) Writer(stream Stream) io.Writer {
	return streamWriter{s, stream}
}

type streamWriter struct {
	s      *Sink
	stream Stream
}

func (w streamWriter) Write(p []byte) (int, error) {
	if w.stream != Stdout && w.stream != Stderr {
		return 0, fmt.Errorf("logs: invalid stream %d", w.stream)
	}
	if len(p) == 0 {
		return 0, nil
	}
	var lines [][]byte
	for _, line := range bytes.Split(bytes.TrimSuffix(p, []byte("\n")), []byte("\n")) {
		for len(line) > maxLine {
			lines = append(lines, line[:maxLine])
			line = line[maxLine:]
		}
		lines = append(lines, line)
	}
	if err := w.s.write(w.stream, lines); err != nil {
		return 0, err
	}
	return len(p), nil
}

// write logs lines to stream's file and the combined file, one Write call
// per line and file, and publishes them to followers. All lines of one call
// stay together. On a closed sink the lines are dropped.
func (s *Sink) write(stream Stream, lines [][]byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	var errs []error
	for _, line := range lines {
		rec := time.Now().UTC().Format(timeLayout) + " " + s.maskLocked(string(line))
		buf := []byte(rec + "\n")
		for _, f := range []io.Writer{s.files[stream], s.files[combinedIdx]} {
			if _, err := f.Write(buf); err != nil {
				errs = append(errs, err)
			}
		}
		s.publish(rec)
	}
	return errors.Join(errs...)
}

// publish hands rec to every follower without blocking; s.mu is held.
func (s *Sink) publish(rec string) {
	for sub := range s.subs {
		if sub.skipped > 0 {
			marker := fmt.Sprintf("%s [slotagent] %d lines skipped", time.Now().UTC().Format(timeLayout), sub.skipped)
			select {
			case sub.ch <- marker:
				sub.skipped = 0
			default:
				sub.skipped++
				continue
			}
		}
		select {
		case sub.ch <- rec:
		default:
			sub.skipped++
		}
	}
}

// Mask returns text with the values the sink masks in its lines (see
// SetSecrets) replaced by "********". What the sink's process says
// elsewhere (an error quoting its output, a record, the agent's own log)
// passes through Mask, so it shows no more than the log does.
func (s *Sink) Mask(text string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maskLocked(text)
}

// maskLocked is Mask with s.mu held.
func (s *Sink) maskLocked(text string) string {
	if s.masker == nil {
		return text
	}
	return s.masker.Replace(text)
}

// SetSecrets makes every later line have each occurrence of any of values
// replaced by "********" before it is written or published, replacing the
// values an earlier SetSecrets gave. Values shorter than 4 bytes are
// ignored. The values a process gave with SetSecretsOf stay masked.
func (s *Sink) SetSecrets(values []string) { s.SetSecretsOf("", values) }

// SetSecretsOf sets the values masked for owner, a process writing to the
// sink (several do: the old and the new release of a slot): they stay
// masked until DropSecretsOf(owner), once it can write no more. What is
// masked is the union of every owner's values.
func (s *Sink) SetSecretsOf(owner string, values []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.secretsOf == nil {
		s.secretsOf = map[string][]string{}
	}
	s.secretsOf[owner] = slices.Clone(values)
	s.rebuildMaskerLocked()
}

// DropSecretsOf forgets owner's values: later lines show them (unless
// another owner has them too).
func (s *Sink) DropSecretsOf(owner string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.secretsOf[owner]; !ok {
		return
	}
	delete(s.secretsOf, owner)
	s.rebuildMaskerLocked()
}

// rebuildMaskerLocked makes the masker of the union of every owner's
// values, when that union changed; s.mu is held.
func (s *Sink) rebuildMaskerLocked() {
	set := map[string]bool{}
	for _, values := range s.secretsOf {
		for _, v := range values {
			if len(v) >= minSecret {
				set[v] = true
			}
		}
	}
	if maps.Equal(set, s.secrets) {
		return
	}
	s.secrets = set
	keep := slices.Collect(maps.Keys(set))
	// Longer values first, so a secret containing another is masked whole.
	sort.Slice(keep, func(i, j int) bool {
		if len(keep[i]) != len(keep[j]) {
			return len(keep[i]) > len(keep[j])
		}
		return keep[i] < keep[j]
	})
	s.masker = nil
	if len(keep) > 0 {
		pairs := make([]string, 0, 2*len(keep))
		for _, v := range keep {
			pairs = append(pairs, v, maskText)
		}
		s.masker = strings.NewReplacer(pairs...)
	}
}

// SecretValues returns the values of env to mask in logs: every value of a
// key that names a secret (containing TOKEN, SECRET, PASSWORD or KEY, or
// DATABASE_URL), and every other value of at least 8 bytes. Shorter values
// of other keys ("true", "info", "3000") would mask common words.
func SecretValues(env map[string]string) []string {
	var out []string
	for k, v := range env {
		if len(v) >= minLongSecret || secretKey(k) {
			out = append(out, v)
		}
	}
	sort.Strings(out)
	return out
}

// secretKey reports whether an env key names a secret.
func secretKey(k string) bool {
	k = strings.ToUpper(k)
	if k == "DATABASE_URL" {
		return true
	}
	for _, part := range []string{"TOKEN", "SECRET", "PASSWORD", "KEY"} {
		if strings.Contains(k, part) {
			return true
		}
	}
	return false
}

// Tail returns up to the last n lines of the combined file, oldest first.
// Rotated backups are not read.
func (s *Sink) Tail(n int) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return tailFile(s.paths[combinedIdx], n)
}

// tailFile reads path backwards in blocks until it holds n complete lines.
func tailFile(path string, n int) ([]string, error) {
	if n <= 0 {
		return nil, nil
	}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, fmt.Errorf("logs: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("logs: %w", err)
	}
	// n lines ending in "\n" are complete once n+1 newlines are seen (or the start).
	var buf []byte
	off, newlines := fi.Size(), 0
	for off > 0 && newlines <= n {
		k := min(int64(tailBlock), off)
		off -= k
		block := make([]byte, k, k+int64(len(buf)))
		if _, err := f.ReadAt(block, off); err != nil {
			return nil, fmt.Errorf("logs: %w", err)
		}
		newlines += bytes.Count(block, []byte("\n"))
		buf = append(block, buf...)
	}
	buf = bytes.TrimSuffix(buf, []byte("\n"))
	if len(buf) == 0 {
		return nil, nil
	}
	lines := strings.Split(string(buf), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines, nil
}

// Follow returns the last n lines like Tail and a channel of every line
// written afterwards; no line is lost or repeated between the two. A
// follower that falls behind loses lines and, once there is room again,
// gets one line "[slotagent] N lines skipped". cancel (idempotent)
// unsubscribes and closes the channel; Close closes it as well.
func (s *Sink) Follow(n int) (lines []string, next <-chan string, cancel func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, nil, nil, ErrClosed
	}
	if lines, err = tailFile(s.paths[combinedIdx], n); err != nil {
		return nil, nil, nil, err
	}
	sub := &subscriber{ch: make(chan string, followBuf)}
	s.subs[sub] = struct{}{}
	cancel = func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if _, ok := s.subs[sub]; ok {
			delete(s.subs, sub)
			close(sub.ch)
		}
	}
	return lines, sub.ch, cancel, nil
}

// Paths returns the paths of the stdout, stderr and combined files.
func (s *Sink) Paths() (out, err, combined string) {
	return s.paths[Stdout], s.paths[Stderr], s.paths[combinedIdx]
}

// Close closes the files and all Follow channels. Later lines from pipes
// are read and dropped. It is idempotent.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	for sub := range s.subs {
		close(sub.ch)
	}
	s.subs = nil
	return s.closeFiles()
}

// closeFiles closes the files opened so far.
func (s *Sink) closeFiles() error {
	var errs []error
	for _, f := range s.files {
		if f == nil {
			continue
		}
		if err := f.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
