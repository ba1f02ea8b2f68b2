package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestRecordsKeepTheNewestAndAbandonRunningOnes(t *testing.T) {
	dir := t.TempDir()
	r, err := loadRecords(dir, 3)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		rec := &Record{ID: fmt.Sprintf("a-2026112500000%d", i), Slot: "a", Status: Succeeded, CreatedAt: time.Now()}
		if i == 4 {
			rec.Status = Running
		}
		if err := os.MkdirAll(filepath.Join(dir, "a"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "a", rec.ID+".log"), []byte("log\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := r.add(rec); err != nil {
			t.Fatal(err)
		}
	}
	list := r.list("a")
	if len(list) != 3 || list[0].ID != "a-20261125000004" || list[2].ID != "a-20261125000002" {
		t.Fatalf("kept %+v", list)
	}
	if _, err := os.Stat(filepath.Join(dir, "a", "a-20261125000000.log")); !os.IsNotExist(err) {
		t.Fatalf("the log of a dropped record is still there: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "a", "a-torn.json"), []byte(`{"id": "a-to`), 0o600); err != nil {
		t.Fatal(err)
	}
	// Temporary files of writes a crash cut short, in both namings.
	temps := []string{filepath.Join(dir, "a", ".a-20261125000004.json.tmp-123"), filepath.Join(dir, "a", "a-20261125000003.json.tmp")}
	for _, tmp := range temps {
		if err := os.WriteFile(tmp, []byte(`{"id": "a-2026`), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// A new agent: the running record is abandoned, the torn one skipped.
	r2, err := loadRecords(dir, 3)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := r2.get("a-20261125000004")
	if !ok || got.Status != Abandoned || got.FinishedAt.IsZero() || got.Error == "" {
		t.Fatalf("after restart: %+v", got)
	}
	if len(r2.list("a")) != 3 {
		t.Fatalf("records after restart: %d", len(r2.list("a")))
	}
	if _, ok := r2.get("b-1"); ok {
		t.Fatal("found a record that does not exist")
	}
	for _, tmp := range temps {
		if _, err := os.Stat(tmp); !os.IsNotExist(err) {
			t.Errorf("a temporary record is left after a load: %s (%v)", tmp, err)
		}
	}
}

func TestShortCommit(t *testing.T) {
	for in, want := range map[string]string{
		"": "local",
		"0123456789abcdef0123456789abcdef01234567":       "0123456",
		"0123456789abcdef0123456789abcdef01234567-dirty": "0123456-dirty",
		"folder":      "folder",
		"uncommitted": "uncommitted",
	} {
		if got := shortCommit(in); got != want {
			t.Errorf("shortCommit(%q) = %q, want %q", in, got, want)
		}
	}
}
