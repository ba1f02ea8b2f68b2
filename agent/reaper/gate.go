package reaper

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// gateScript runs the command (its arguments) once the agent writes a line
// to fd 3; when the agent dies first, the read ends with end-of-file and
// the command never runs (exit code GateClosed). No shell stays: it execs
// the command, which keeps the gate's PID, process group and start time.
const gateScript = `IFS= read -r _ <&3 || exit 125; exec 3<&-; exec "$@"`

// GateClosed is the exit code of a gated command whose gate closed without
// opening: its program never ran.
const GateClosed = 125

// Gate holds a command started by StartGated before its program runs.
type Gate struct{ w *os.File }

// StartGated starts cmd like Start, held at a gate: /bin/sh, in cmd's
// process group, working directory and environment, waits until Open is
// called and then execs cmd's program with its arguments. When the gate
// closes without opening (Close, or the agent dies) the program never
// runs. So the caller can record the new process group (its PID is the
// child's) durably before anything runs in it, and an agent killed at any
// moment leaves nothing running that the next agent cannot find.
//
// cmd is rewritten to run the gate; it must have no ExtraFiles (the gate
// reads fd 3). A program that cannot be found fails here, as exec.Command's
// lookup does, not at the gate's exec.
func StartGated(cmd *exec.Cmd) (*Child, *Gate, error) {
	if cmd.Err != nil {
		return nil, nil, cmd.Err
	}
	if len(cmd.ExtraFiles) > 0 {
		return nil, nil, errors.New("reaper: a gated command cannot have extra files")
	}
	path := cmd.Path
	if filepath.IsAbs(path) {
		if _, err := exec.LookPath(path); err != nil {
			return nil, nil, err
		}
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, nil, fmt.Errorf("gate pipe: %w", err)
	}
	defer r.Close()
	var args []string
	if len(cmd.Args) > 1 {
		args = cmd.Args[1:]
	}
	cmd.Path = "/bin/sh"
	cmd.Args = append([]string{"/bin/sh", "-c", gateScript, "slotagent-gate", path}, args...)
	cmd.ExtraFiles = []*os.File{r}
	child, err := Start(cmd)
	if err != nil {
		w.Close()
		return nil, nil, err
	}
	return child, &Gate{w: w}, nil
}

// Open lets the command's program run.
func (g *Gate) Open() {
	// A child killed at its gate has closed the pipe: nothing to open.
	_, _ = g.w.Write([]byte("\n"))
	g.w.Close()
}
