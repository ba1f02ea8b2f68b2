package ecosystem

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/coder-slots/coder-slots/agent/supervisor"
)

// TestWriteJSKeepsNotesInComments: a note with any JavaScript line end (a
// folder name can hold one) stays a comment, and the file is valid.
func TestWriteJSKeepsNotesInComments(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed")
	}
	pol := supervisor.DefaultPolicy()
	pol.MaxMemory = 256 << 20
	app := NewApp("slot-a", []string{"sh", "-c", "exec node server.js"}, pol, "/logs", "slot-a")
	app.Env = map[string]string{"TOKEN": Secret("t0k\u2028x", false), "NAME": "line\u2028end"}
	f := File{Notes: []string{"folder /x\u2028process.exit(3)\ris gone\nsecond\u2029line"}, Apps: []App{app}}
	var b bytes.Buffer
	if err := f.WriteJS(&b); err != nil {
		t.Fatal(err)
	}
	js := b.String()
	for _, want := range []string{"// folder /x\n// process.exit(3)\n// is gone\n// second\n// line\n", `"TOKEN": "********"`,
		`"max_memory_restart": "262144K"`, `"out_file": "/logs/slot-a-out.log"`, `"script": "sh"`, "masked"} {
		if !strings.Contains(js, want) {
			t.Errorf("lacks %q:\n%s", want, js)
		}
	}
	path := filepath.Join(t.TempDir(), "ecosystem.config.js")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	script := "const c = require(process.argv[1]); if (c.apps[0].env.NAME !== 'line\\u2028end') process.exit(2)"
	if out, err := exec.Command(node, "-e", script, path).CombinedOutput(); err != nil {
		t.Errorf("node loading the file: %v %s\n%s", err, out, js)
	}
}
