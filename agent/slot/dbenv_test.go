package slot

import (
	"slices"
	"testing"
)

func TestDatabaseEnv(t *testing.T) {
	s := &Slot{cfg: Config{Name: "a", BaseEnv: []string{"HOME=/home/coder"}, DBEnv: map[string]string{
		"DATABASE_URL": "postgresql://slot_a:pw-a@127.0.0.1:5432/slot_a", "PGPASSWORD": "pw-a", "PGUSER": "slot_a",
	}}}
	rel := Release{ID: "r1", Env: map[string]string{"PGUSER": "mine", "API_TOKEN": "tok"}}
	env := s.appEnv(rel, 4000)
	for _, want := range []string{"DATABASE_URL=postgresql://slot_a:pw-a@127.0.0.1:5432/slot_a", "PGPASSWORD=pw-a", "API_TOKEN=tok", "PORT=4000"} {
		if !slices.Contains(env, want) {
			t.Errorf("app env lacks %s: %v", want, env)
		}
	}
	// The release's env comes later, so it wins.
	if i, j := slices.Index(env, "PGUSER=slot_a"), slices.Index(env, "PGUSER=mine"); i < 0 || j < i {
		t.Errorf("PGUSER order in %v", env)
	}
	shown := s.shownEnv(rel, 4000)
	if shown["DATABASE_URL"] != "********" || shown["PGPASSWORD"] != "********" || shown["API_TOKEN"] != "********" || shown["PORT"] != "4000" {
		t.Errorf("shown env %v", shown)
	}
}
