package images

import (
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/coder-slots/coder-slots/provision/config"
)

func TestWorkspaceImageDockerfile(t *testing.T) {
	body, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	s, err := Inspect(body)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Essentials(true); err != nil {
		t.Fatal(err)
	}
	if len(s.Bases) != 2 || !strings.HasPrefix(s.Bases[0], "golang:") || !strings.HasPrefix(s.Bases[1], "node:") {
		t.Fatalf("bases = %q; want a Go builder stage and a Node.js final stage", s.Bases)
	}
	if s.User != "coder" {
		t.Fatalf("user = %q", s.User)
	}
	text := string(body)
	for _, want := range []string{"./agent/cmd/slotagent", "COPY --from=build /out/slotagent /usr/local/bin/slotagent",
		"postgresql", "git", "pnpm@", "--home /home/coder"} {
		if !strings.Contains(text, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}

func TestEssentialsRejects(t *testing.T) {
	cases := map[string]struct{ dockerfile, want string }{
		"shell-form entrypoint":         {"FROM debian:12\nUSER coder\nENTRYPOINT slotagent run\n", "exec form: false"},
		"other entrypoint":              {"FROM debian:12\nUSER coder\nENTRYPOINT [\"node\", \"server.js\"]\n", `has ["node" "server.js"]`},
		"no user":                       {"FROM debian:12\nENTRYPOINT [\"slotagent\", \"run\"]\n", `runs as root (USER "")`},
		"root by uid":                   {"FROM debian:12\nUSER 0:0\nENTRYPOINT [\"slotagent\", \"run\"]\n", `runs as root (USER "0:0")`},
		"user in an earlier stage only": {"FROM debian:12 AS a\nUSER coder\nFROM debian:12\nENTRYPOINT [\"slotagent\", \"run\"]\n", "runs as root"},
		"latest":                        {"FROM debian:latest\nUSER coder\nENTRYPOINT [\"slotagent\", \"run\"]\n", `base image "debian:latest" is not pinned`},
		"no tag":                        {"FROM golang AS b\nFROM debian:12\nUSER coder\nENTRYPOINT [\"slotagent\", \"run\"]\n", `base image "golang" is not pinned`},
		"registry port, no tag":         {"FROM reg.example.com:5000/team/img\nUSER coder\nENTRYPOINT [\"slotagent\", \"run\"]\n", "is not pinned"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			s, err := Inspect([]byte(tc.dockerfile))
			if err != nil {
				t.Fatal(err)
			}
			err = s.Essentials(true)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v; want %q", err, tc.want)
			}
		})
	}
}

func TestInspectSyntaxError(t *testing.T) {
	if _, err := Inspect([]byte("FROM debian:12\nCOPY --chmod=x\n")); err == nil {
		t.Fatal("no error for a broken COPY")
	}
	if _, err := Inspect([]byte("# nothing\n")); err == nil {
		t.Fatal("no error for a Dockerfile without FROM")
	}
}

func TestPinned(t *testing.T) {
	for ref, want := range map[string]bool{
		"node:24.21.0-bookworm-slim": true, "ghcr.io/acme/ws@sha256:" + strings.Repeat("a", 64): true,
		"reg.example.com:5000/x:1.2": true, "reg.example.com:5000/x": false, "debian": false, "debian:latest": false,
	} {
		if got := Pinned(ref); got != want {
			t.Errorf("Pinned(%q) = %t", ref, got)
		}
	}
}

// The rendered Dockerfile itself is a golden file of terraform/render.
func TestRender(t *testing.T) {
	im := config.Image{Mode: config.ImageBuild, Ref: "ghcr.io/acme/coder-slots:1.4.0",
		Build: config.Build{NodeMajor: 24, AptPackages: []string{"jq", "git", "imagemagick"}}}
	got, err := Render(im, true)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := Render(im, true)
	if string(again) != string(got) {
		t.Fatal("two renders differ")
	}
	s, err := Inspect(got)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Bases, []string{"ghcr.io/acme/coder-slots:1.4.0", "node:24-bookworm-slim"}) {
		t.Fatalf("bases = %q", s.Bases)
	}
	if strings.Count(string(got), " git ") != 1 {
		t.Fatal("git is listed twice")
	}
	without, err := Render(config.Image{Ref: "x/y:1", Build: config.Build{Base: "debian:12-slim"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(without), "postgresql") || !strings.Contains(string(without), "FROM debian:12-slim\n") {
		t.Fatalf("postgres off, base debian:\n%s", without)
	}
}
