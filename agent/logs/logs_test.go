package logs

import (
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func openSink(t *testing.T, opt Options) *Sink {
	t.Helper()
	s, err := Open(t.TempDir(), "app", opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// payload checks that rec is "<timestamp> <line>" and returns the line.
func payload(t *testing.T, rec string) string {
	t.Helper()
	ts, line, ok := strings.Cut(rec, " ")
	if !ok || len(ts) != len(timeLayout) {
		t.Fatalf("record without timestamp: %.80q", rec)
	}
	if _, err := time.Parse(timeLayout, ts); err != nil {
		t.Fatalf("bad timestamp in %.80q: %v", rec, err)
	}
	return line
}

// recv returns the next followed line, failing the test after a timeout.
func recv(t *testing.T, next <-chan string) string {
	t.Helper()
	select {
	case rec, ok := <-next:
		if !ok {
			t.Fatal("follow channel closed")
		}
		return rec
	case <-time.After(10 * time.Second):
		t.Fatal("no followed line within 10s")
		return ""
	}
}

// closedSoon reports whether next is closed (after draining buffered lines) within 5s.
func closedSoon(next <-chan string) bool {
	timeout := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-next:
			if !ok {
				return true
			}
		case <-timeout:
			return false
		}
	}
}

// readLines returns the payloads of every line of the log file at path.
func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(path, ".gz") {
		if r, err = gzip.NewReader(f); err != nil {
			t.Fatal(err)
		}
	}
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) == 0 {
		return nil
	}
	if data[len(data)-1] != '\n' {
		t.Fatalf("%s does not end with a newline", path)
	}
	var out []string
	for _, rec := range strings.Split(string(data[:len(data)-1]), "\n") {
		out = append(out, payload(t, rec))
	}
	return out
}

func TestChildProcess(t *testing.T) {
	s := openSink(t, Options{})
	wOut, doneOut, err := s.Pipe(Stdout)
	if err != nil {
		t.Fatal(err)
	}
	wErr, doneErr, err := s.Pipe(Stderr)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", "echo out1; echo err1 >&2; printf partial")
	cmd.Stdout, cmd.Stderr = wOut, wErr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	wOut.Close()
	wErr.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	for _, d := range []<-chan struct{}{doneOut, doneErr} {
		select {
		case <-d:
		case <-time.After(10 * time.Second):
			t.Fatal("pipe reader did not finish")
		}
	}
	out, errPath, combined := s.Paths()
	if got := readLines(t, out); !slices.Equal(got, []string{"out1", "partial"}) {
		t.Errorf("out file = %q", got)
	}
	if got := readLines(t, errPath); !slices.Equal(got, []string{"err1"}) {
		t.Errorf("error file = %q", got)
	}
	got := readLines(t, combined)
	slices.Sort(got)
	if !slices.Equal(got, []string{"err1", "out1", "partial"}) {
		t.Errorf("combined file = %q", got)
	}
	for _, p := range []string{out, errPath, combined} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", p, fi.Mode().Perm())
		}
	}
}

func TestRotationConcurrentNoLoss(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, "app", Options{MaxSizeMB: 1, MaxBackups: 50})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const writers, perWriter = 4, 8000 // ~130 bytes a line: ~4 MB in all
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := s.Writer(Stdout)
			for i := 0; i < perWriter; {
				var b strings.Builder
				for k := 0; k <= i%3 && i < perWriter; k++ { // 1-3 lines per Write
					pad := (i*7 + g*13) % 250
					fmt.Fprintf(&b, "g%d-%d-%d %s\n", g, i, pad, strings.Repeat("x", pad))
					i++
				}
				if _, err := io.WriteString(w, b.String()); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Wait until lumberjack has compressed every backup.
	var files []string
	deadline := time.Now().Add(20 * time.Second)
	for {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		files = nil
		pending := 0
		for _, e := range entries {
			name := e.Name()
			files = append(files, name)
			if strings.HasSuffix(name, ".log") && name != "app.log" && name != "app-out.log" && name != "app-error.log" {
				pending++
			}
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("backups still uncompressed: %q", files)
		}
		time.Sleep(20 * time.Millisecond)
	}

	check := func(current string, isBackup func(string) bool) {
		seen := make(map[string]int)
		backups := 0
		for _, name := range files {
			if name != current && !isBackup(name) {
				continue
			}
			if name != current {
				backups++
			}
			for _, line := range readLines(t, filepath.Join(dir, name)) {
				// Line "g<g>-<i>-<pad> <pad x>": whole iff the padding length matches.
				key, rest, _ := strings.Cut(line, " ")
				parts := strings.Split(key, "-")
				pad, err := strconv.Atoi(parts[len(parts)-1])
				if len(parts) != 3 || err != nil || rest != strings.Repeat("x", pad) {
					t.Fatalf("%s: broken line %.100q", name, line)
				}
				seen[key]++
			}
		}
		if backups < 2 {
			t.Errorf("%s: %d backups, want at least 2 rotations", current, backups)
		}
		if len(seen) != writers*perWriter {
			t.Errorf("%s: %d distinct lines, want %d", current, len(seen), writers*perWriter)
		}
		for key, n := range seen {
			if n != 1 {
				t.Errorf("%s: line %s appears %d times", current, key, n)
			}
		}
	}
	check("app.log", func(n string) bool {
		return strings.HasPrefix(n, "app-2") && strings.HasSuffix(n, ".log.gz")
	})
	check("app-out.log", func(n string) bool {
		return strings.HasPrefix(n, "app-out-") && strings.HasSuffix(n, ".log.gz")
	})
	if got := readLines(t, filepath.Join(dir, "app-error.log")); len(got) != 0 {
		t.Errorf("error file has %d lines, want none", len(got))
	}
}

// pattern returns n bytes that do not repeat with a period of maxLine.
func pattern(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = "abcdefghijklmnopqrstuvwxyz0123456789"[(i*31+i/97)%36]
	}
	return string(b)
}

func TestLongLines(t *testing.T) {
	s := openSink(t, Options{})
	long := pattern(3*maxLine + 1234)
	exact := pattern(maxLine)
	w, done, err := s.Pipe(Stdout)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		io.WriteString(w, long+"\n"+exact+"\nshort\n"+long) // final partial line is long too
		w.Close()
	}()
	<-done
	if _, err := io.WriteString(s.Writer(Stderr), long+"\n"); err != nil {
		t.Fatal(err)
	}
	out, errPath, _ := s.Paths()

	pieces := func(s string) []string {
		var p []string
		for len(s) > maxLine {
			p, s = append(p, s[:maxLine]), s[maxLine:]
		}
		return append(p, s)
	}
	want := slices.Concat(pieces(long), []string{exact, "short"}, pieces(long))
	got := readLines(t, out)
	if len(got) != len(want) {
		t.Fatalf("out file has %d lines, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("out line %d: %d bytes, want %d (or content differs)", i, len(got[i]), len(want[i]))
		}
	}
	if got := readLines(t, errPath); !slices.Equal(got, pieces(long)) {
		t.Errorf("error file: %d lines, want the %d pieces of the long line", len(got), len(pieces(long)))
	}
}

func TestSecrets(t *testing.T) {
	s := openSink(t, Options{})
	s.SetSecrets([]string{"hunter22", "abc", "", "hunter22xyz"})
	_, next, cancel, err := s.Follow(0)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel()
	io.WriteString(s.Writer(Stdout), "pw=hunter22 again=hunter22xyz short=abc\n")
	want := "pw=******** again=******** short=abc"
	if got := payload(t, recv(t, next)); got != want {
		t.Errorf("followed line = %q, want %q", got, want)
	}
	out, _, combined := s.Paths()
	for _, p := range []string{out, combined} {
		if got := readLines(t, p); !slices.Equal(got, []string{want}) {
			t.Errorf("%s = %q, want %q", p, got, want)
		}
	}
	// Processes on the same sink add their secrets; the others' stay.
	s.SetSecretsOf("app@r1", []string{"oldtoken1"})
	s.SetSecretsOf("app@r2", []string{"newtoken1"})
	io.WriteString(s.Writer(Stdout), "pw=hunter22 old=oldtoken1 new=newtoken1\n")
	if got := payload(t, recv(t, next)); got != "pw=******** old=******** new=********" {
		t.Errorf("with two processes' secrets: %q", got)
	}
	// The old process is gone: its values are words again.
	s.DropSecretsOf("app@r1")
	io.WriteString(s.Writer(Stdout), "pw=hunter22 old=oldtoken1 new=newtoken1\n")
	if got := payload(t, recv(t, next)); got != "pw=******** old=oldtoken1 new=********" {
		t.Errorf("after the old process's secrets were dropped: %q", got)
	}
	// Mask masks what the lines mask, for text told elsewhere.
	if got := s.Mask("build failed: pw=hunter22 old=oldtoken1 new=newtoken1"); got != "build failed: pw=******** old=oldtoken1 new=********" {
		t.Errorf("Mask = %q", got)
	}
	s.SetSecrets(nil)
	io.WriteString(s.Writer(Stdout), "pw=hunter22\n")
	if got := payload(t, recv(t, next)); got != "pw=hunter22" {
		t.Errorf("after clearing secrets: %q", got)
	}
}

// TestSecretValues: short values of ordinary keys are not secrets (they
// would mask "true" or "info" everywhere); values of secret-looking keys
// are, whatever their length.
func TestSecretValues(t *testing.T) {
	got := SecretValues(map[string]string{
		"DEBUG": "true", "LOG_LEVEL": "info", "PORT_HINT": "3000", "NODE_ENV": "production",
		"API_TOKEN": "tok12", "client_secret": "s3cr", "DB_PASSWORD": "pass", "STRIPE_KEY": "k-123",
		"DATABASE_URL": "pg://x", "GREETING": "hello world",
	})
	want := []string{"hello world", "k-123", "pass", "pg://x", "production", "s3cr", "tok12"}
	if !slices.Equal(got, want) {
		t.Fatalf("SecretValues = %q, want %q", got, want)
	}
}

func TestTail(t *testing.T) {
	s := openSink(t, Options{})
	w := s.Writer(Stdout)
	const total = 5000 // ~ 5000*(25+40) bytes: several tail blocks
	for i := range total {
		fmt.Fprintf(w, "line %d %s\n", i, strings.Repeat("y", i%30))
	}
	_, _, combined := s.Paths()
	if fi, err := os.Stat(combined); err != nil || fi.Size() < 3*tailBlock {
		t.Fatalf("combined file too small for the test: %v %v", fi.Size(), err)
	}
	for _, n := range []int{1, 10, 2000, total, total + 10} {
		got, err := s.Tail(n)
		if err != nil {
			t.Fatal(err)
		}
		wantLen := min(n, total)
		if len(got) != wantLen {
			t.Fatalf("Tail(%d) returned %d lines", n, len(got))
		}
		for k, rec := range got {
			i := total - wantLen + k
			if want := fmt.Sprintf("line %d %s", i, strings.Repeat("y", i%30)); payload(t, rec) != want {
				t.Fatalf("Tail(%d)[%d] = %q, want %q", n, k, rec, want)
			}
		}
	}
	if got, err := s.Tail(0); err != nil || len(got) != 0 {
		t.Errorf("Tail(0) = %q, %v", got, err)
	}
}

func TestFollow(t *testing.T) {
	s := openSink(t, Options{})
	w := s.Writer(Stdout)
	io.WriteString(w, "a\nb\nc\n")
	lines, next, cancel, err := s.Follow(2)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 || payload(t, lines[0]) != "b" || payload(t, lines[1]) != "c" {
		t.Fatalf("Follow initial lines = %q", lines)
	}
	io.WriteString(w, "d\n")
	io.WriteString(s.Writer(Stderr), "e\n")
	for _, want := range []string{"d", "e"} {
		if got := payload(t, recv(t, next)); got != want {
			t.Errorf("followed %q, want %q", got, want)
		}
	}
	cancel()
	cancel() // idempotent
	if !closedSoon(next) {
		t.Error("channel still open after cancel")
	}

	t.Run("slow subscriber", func(t *testing.T) {
		_, next, cancel, err := s.Follow(0)
		if err != nil {
			t.Fatal(err)
		}
		defer cancel()
		for i := range followBuf + 10 {
			fmt.Fprintf(w, "n%d\n", i)
		}
		for i := range followBuf {
			if got, want := payload(t, recv(t, next)), fmt.Sprintf("n%d", i); got != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		}
		io.WriteString(w, "after\n")
		if got := payload(t, recv(t, next)); got != "[slotagent] 10 lines skipped" {
			t.Errorf("got %q, want the skipped marker", got)
		}
		if got := payload(t, recv(t, next)); got != "after" {
			t.Errorf("got %q, want %q", got, "after")
		}
	})

	t.Run("no loss or duplicate while writing", func(t *testing.T) {
		s := openSink(t, Options{})
		const total = 1000 // at most 900 after subscribing: never more than the channel buffer
		started := make(chan struct{})
		go func() {
			w := s.Writer(Stdout)
			for i := range total {
				if i == 100 {
					close(started)
				}
				fmt.Fprintf(w, "%d\n", i)
			}
		}()
		<-started
		lines, next, cancel, err := s.Follow(total)
		if err != nil {
			t.Fatal(err)
		}
		defer cancel()
		i := 0
		for _, rec := range lines {
			if got := payload(t, rec); got != strconv.Itoa(i) {
				t.Fatalf("initial line %d = %q", i, got)
			}
			i++
		}
		if i < 100 {
			t.Fatalf("only %d initial lines", i)
		}
		for ; i < total; i++ {
			if got := payload(t, recv(t, next)); got != strconv.Itoa(i) {
				t.Fatalf("followed %q, want %d", got, i)
			}
		}
	})

	t.Run("close closes channels", func(t *testing.T) {
		s, err := Open(t.TempDir(), "app", Options{})
		if err != nil {
			t.Fatal(err)
		}
		_, next, cancel, err := s.Follow(0)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if !closedSoon(next) {
			t.Error("channel still open after Close")
		}
		cancel() // safe after Close
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if _, err := s.Writer(Stdout).Write([]byte("x\n")); err != ErrClosed {
			t.Errorf("Write after Close: %v, want ErrClosed", err)
		}
	})
}

// TestNoRotateSinksLeaveNoGoroutine: a sink without rotation, written to and
// closed, leaves nothing running (a rotating one keeps lumberjack's mill).
func TestNoRotateSinksLeaveNoGoroutine(t *testing.T) {
	dir := t.TempDir()
	before := runtime.NumGoroutine()
	for i := range 20 {
		s, err := Open(dir, "deploy-"+strconv.Itoa(i), Options{NoRotate: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, stream := range []Stream{Stdout, Stderr} {
			if _, err := fmt.Fprintln(s.Writer(stream), "line"); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		lines, err := tailFile(filepath.Join(dir, "deploy-"+strconv.Itoa(i)+".log"), 10)
		if err != nil || len(lines) != 2 {
			t.Fatalf("combined log: %q, %v", lines, err)
		}
	}
	if after := runtime.NumGoroutine(); after > before {
		t.Fatalf("goroutines: %d before, %d after 20 sinks", before, after)
	}
}
