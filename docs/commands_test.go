// Package docs holds the check of the command lines the documentation
// shows (the documentation itself is the Markdown beside it).
package docs

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	agentcli "github.com/coder-slots/coder-slots/agent/cli"
	provcli "github.com/coder-slots/coder-slots/provision/cli"
)

// commandLine is a slotagent or slotprov command line found in a document.
type commandLine struct {
	where string // file:line
	text  string
	// inline is a code span in prose, which may name a command (and a
	// flag) without its arguments: `slotagent deploy --wait`.
	inline bool
}

var (
	fence  = regexp.MustCompile("^\\s*```")
	inline = regexp.MustCompile("`((?:[\\w./-]*/)?(?:slotagent|slotprov)(?: [^`]*)?)`")
	// synopsis marks a usage line ("deploy SLOT (--repo URL | --dir
	// PATH) [--wait]"), not a command to run.
	synopsis = regexp.MustCompile(`[\[\]()…{}<>]|\.\.\.`)
)

// commandLines finds the command lines of a Markdown document: the lines
// of its fenced blocks and its inline code spans that run slotagent or
// slotprov.
func commandLines(t *testing.T, path string) []commandLine {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []commandLine
	inBlock, continued := false, ""
	for i, line := range strings.Split(string(b), "\n") {
		where := fmt.Sprintf("%s:%d", filepath.Base(path), i+1)
		if fence.MatchString(line) {
			inBlock, continued = !inBlock, ""
			continue
		}
		if inBlock {
			// A line ending in \ goes on on the next one.
			if cut, ok := strings.CutSuffix(line, "\\"); ok {
				continued += cut
				continue
			}
			out = append(out, commandLine{where: where, text: continued + line})
			continued = ""
			continue
		}
		for _, m := range inline.FindAllStringSubmatch(line, -1) {
			out = append(out, commandLine{where: where, text: m[1], inline: true})
		}
	}
	return out
}

// words splits a shell command line into words (single and double quotes,
// backslash escapes), and into commands at |, &&, || and ;. A # starts a
// comment.
func words(line string) [][]string {
	var cmds [][]string
	var cur []string
	var w strings.Builder
	inWord := false
	end := func() {
		if inWord {
			cur = append(cur, w.String())
			w.Reset()
			inWord = false
		}
	}
	var quote rune
	rs := []rune(line)
	for i := 0; i < len(rs); i++ {
		r := rs[i]
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else if r == '\\' && quote == '"' && i+1 < len(rs) {
				i++
				w.WriteRune(rs[i])
			} else {
				w.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == '\\' && i+1 < len(rs):
			i++
			w.WriteRune(rs[i])
			inWord = true
		case r == ' ' || r == '\t':
			end()
		case r == '#' && !inWord:
			end()
			return append(cmds, cur)
		case r == '|' || r == ';' || r == '&':
			end()
			if len(cur) > 0 {
				cmds = append(cmds, cur)
			}
			cur = nil
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	end()
	return append(cmds, cur)
}

// invocation is the arguments of the slotagent or slotprov run by cmd
// (after any VAR=value, sudo, env or `coder ssh … --`), and which.
func invocation(cmd []string) (prog string, args []string, ok bool) {
	for i, w := range cmd {
		if base := filepath.Base(w); base == "slotagent" || base == "slotprov" {
			return base, cmd[i+1:], true
		}
	}
	return "", nil, false
}

// placeholders are the words the docs put for a value, and a value of
// the kind the command checks (a slot name, a number).
var placeholders = map[string]string{"SLOT": "a", "N": "1"}

// parse checks args against the real command tree of root without
// running anything: the subcommand must exist, every flag be known and
// take the value it is given, and the positional arguments be what the
// command accepts (unless named says the line only names the command:
// then no positional argument is fine).
func parse(root *cobra.Command, args []string, named bool) error {
	args = slices.Clone(args)
	for i, a := range args {
		if v, ok := placeholders[a]; ok {
			args[i] = v
		}
	}
	cmd, rest, err := root.Find(args)
	if err != nil {
		return err
	}
	if err := cmd.ParseFlags(rest); err != nil {
		return fmt.Errorf("%s: %w", cmd.CommandPath(), err)
	}
	if positional := cmd.Flags().Args(); !named || len(positional) > 0 {
		if err := cmd.ValidateArgs(positional); err != nil {
			return fmt.Errorf("%s: %w", cmd.CommandPath(), err)
		}
	}
	return nil
}

// TestEveryCommandLineParses: every slotagent and slotprov command line
// that README.md and docs/*.md show, in code blocks and inline, parses
// with the real cobra command trees: no unknown command or flag, no flag
// missing its value, no wrong number of arguments (an inline span may name
// a command without them). Usage synopses (with [ ], ( ) or …) are not
// command lines and are skipped; SLOT and N stand for a slot and a number. (Running every
// shell block would need a workspace, a Coder deployment and a forge: the
// commands that need them run in make e2e; this check keeps the rest from
// drifting.)
func TestEveryCommandLineParses(t *testing.T) {
	docs, err := filepath.Glob("*.md")
	if err != nil {
		t.Fatal(err)
	}
	docs = append(docs, filepath.Join("..", "README.md"))
	checked := map[string]int{}
	for _, doc := range docs {
		for _, l := range commandLines(t, doc) {
			for _, cmd := range words(l.text) {
				prog, args, ok := invocation(cmd)
				if !ok || synopsis.MatchString(strings.Join(args, " ")) {
					continue
				}
				root := agentcli.New("test")
				if prog == "slotprov" {
					root = provcli.New("test")
				}
				if err := parse(root, args, l.inline); err != nil {
					t.Errorf("%s: `%s %s` does not parse: %v", l.where, prog, strings.Join(args, " "), err)
				}
				checked[prog]++
			}
		}
	}
	t.Logf("command lines checked: %v", checked)
	if checked["slotagent"] < 30 || checked["slotprov"] < 5 {
		t.Fatalf("too few command lines found (%v): is the extraction broken?", checked)
	}
}

// TestTheCheckRefusesWhatDoesNotParse: the check itself catches an
// unknown command, an unknown flag, a flag without its value and extra
// arguments, and reads quotes, pipes and comments as a shell does.
func TestTheCheckRefusesWhatDoesNotParse(t *testing.T) {
	for _, bad := range []string{
		"slotagent deploi a --repo URL",
		"slotagent deploy a --repository URL",
		"slotagent deploy a --repo",
		"slotagent rollback a b c",
		"slotprov render -c slots.yaml --output-dir DIR",
	} {
		prog, args, _ := invocation(words(bad)[0])
		root := agentcli.New("test")
		if prog == "slotprov" {
			root = provcli.New("test")
		}
		if err := parse(root, args, false); err == nil {
			t.Errorf("`%s` parsed", bad)
		}
	}
	got := words(`SLOTAGENT_DATA_DIR=/d slotagent env a set 'GREETING=hello world' "X=\"q\"" | jq . # comment`)
	want := [][]string{{"SLOTAGENT_DATA_DIR=/d", "slotagent", "env", "a", "set", "GREETING=hello world", `X="q"`}, {"jq", "."}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("words: %q, want %q", got, want)
	}
}
