package legacy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var slotNames = []string{"a", "b", "c", "d", "e"}

func write(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "slots.json")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRead(t *testing.T) {
	p := write(t, `{"slots": {
	  "b": {"repository": "https://example.com/app.git", "branch": "main", "status": "deployed",
	        "environment": {"API_KEY": "k1", "WORKERS": 4, "DEBUG": false}},
	  "a": {"repository": "", "branch": "", "status": "empty", "environment": {}},
	  "c": {"status": "available"}}}`)
	slots, err := Read(p, slotNames)
	if err != nil {
		t.Fatal(err)
	}
	if len(slots) != 3 || slots[0].Name != "a" || slots[1].Name != "b" {
		t.Fatalf("slots = %+v", slots)
	}
	b := slots[1]
	if !b.Deployed() || slots[0].Deployed() || b.Branch != "main" || b.Repository != "https://example.com/app.git" {
		t.Fatalf("b = %+v", b)
	}
	if b.Environment["API_KEY"] != "k1" || b.Environment["WORKERS"] != "4" || b.Environment["DEBUG"] != "false" {
		t.Fatalf("env = %v", b.Environment)
	}
}

func TestReadRejectsBadFiles(t *testing.T) {
	cases := map[string]string{
		"not valid JSON":       `{"slots": {`,
		`no "slots" object`:    `{"apps": {}}`,
		`unknown slot "z"`:     `{"slots": {"z": {"status": "empty"}}}`,
		`unknown status "wat"`: `{"slots": {"a": {"status": "wat"}}}`,
		"has no repository":    `{"slots": {"a": {"status": "deployed"}}}`,
		"environment X is not": `{"slots": {"a": {"status": "deployed", "repository": "/r", "environment": {"X": {"y": 1}}}}}`,
	}
	for want, content := range cases {
		if _, err := Read(write(t, content), slotNames); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v", want, err)
		}
	}
	if _, err := Read(filepath.Join(t.TempDir(), "missing.json"), slotNames); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing file: %v", err)
	}
}
