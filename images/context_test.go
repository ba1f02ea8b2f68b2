package images

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// Without a Docker engine, check the builder stage against what the Go
// toolchain says slotagent's build needs: every file of this module that
// `go build ./agent/cmd/slotagent` reads (Go files and embedded files, with
// go.mod and go.sum) must pass Dockerfile.dockerignore (read with moby's
// own matcher) and be copied by a COPY of the build stage, and the stage
// must build that package into what the final stage copies.
func TestBuilderStageHasWhatSlotagentNeeds(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	list := exec.Command("go", "list", "-deps", "-f",
		`{{if .Module}}{{if eq .Module.Path "github.com/coder-slots/coder-slots"}}{{.Dir}}|{{join .GoFiles ","}}|{{join .EmbedFiles ","}}{{end}}{{end}}`,
		"./agent/cmd/slotagent")
	list.Dir = root
	out, err := list.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	needed := []string{"go.mod", "go.sum"}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		parts := strings.Split(line, "|")
		if len(parts) != 3 {
			continue
		}
		rel, err := filepath.Rel(root, parts[0])
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range strings.Split(parts[1]+","+parts[2], ",") {
			if f != "" {
				needed = append(needed, filepath.ToSlash(filepath.Join(rel, f)))
			}
		}
	}
	if len(needed) < 20 || !slices.Contains(needed, "agent/cmd/slotagent/main.go") {
		t.Fatalf("go list found too little: %q", needed)
	}

	ignore, err := os.Open("Dockerfile.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	defer ignore.Close()
	patterns, err := ignorefile.ReadAll(ignore)
	if err != nil {
		t.Fatal(err)
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		t.Fatal(err)
	}

	body, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	res, err := parser.Parse(strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	stages, _, err := instructions.Parse(res.AST, nil)
	if err != nil {
		t.Fatal(err)
	}
	var copied []string
	var runs []string
	for _, cmd := range stages[0].Commands {
		switch c := cmd.(type) {
		case *instructions.CopyCommand:
			copied = append(copied, c.SourcePaths...)
		case *instructions.RunCommand:
			runs = append(runs, strings.Join(c.CmdLine, " "))
		}
	}
	for _, f := range needed {
		if excluded, err := pm.MatchesOrParentMatches(f); err != nil || excluded {
			t.Errorf("Dockerfile.dockerignore leaves out %s (err %v)", f, err)
		}
		if !slices.ContainsFunc(copied, func(src string) bool {
			return src == f || (strings.HasSuffix(src, "/") && strings.HasPrefix(f, src))
		}) {
			t.Errorf("no COPY of the build stage (%q) brings %s", copied, f)
		}
	}
	// And what is not needed stays out of the context.
	for _, f := range []string{".cache/tf-mirror/terraformrc", "bin/slotagent", "provision/push/push.go", "agent/slot/slot_test.go"} {
		if excluded, _ := pm.MatchesOrParentMatches(f); !excluded {
			t.Errorf("the build context takes %s", f)
		}
	}
	if len(runs) != 1 || !strings.Contains(runs[0], "-o /out/slotagent ./agent/cmd/slotagent") {
		t.Fatalf("the build stage's RUN: %q", runs)
	}
	if !strings.Contains(string(body), "COPY --from="+stages[0].Name+" /out/slotagent /usr/local/bin/slotagent") {
		t.Fatal("the final stage does not copy the built slotagent")
	}
}
