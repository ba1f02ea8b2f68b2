package admin

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder-slots/coder-slots/agent/history"
)

func TestHistoryEndpoint(t *testing.T) {
	a, _ := newTestAPI(t)
	h := a.Control()
	slotA := a.b.(*fakeAgent).hist.Slot("a")
	now := time.Now()
	slotA.Request(200, now, time.Millisecond, false)
	slotA.Request(500, now, 2*time.Millisecond, false)
	slotA.Request(503, now, 0, true)
	slotA.Mark(history.Deploy, done.ID, "deploy", 0)

	for _, tc := range []struct {
		query string
		step  int
	}{{"", 10}, {"?range=1h", 10}, {"?range=24h", 60}} {
		var got SlotHistory
		rec := call(t, h, httptest.NewRequest("GET", "/api/slots/a/history"+tc.query, nil), &got)
		last := len(got.Times) - 1
		if rec.Code != 200 || got.Slot != "a" || got.StepSeconds != tc.step || last < 0 ||
			got.Requests[last] != 3 || got.Status5xx[last] != 1 || got.Unavailable[last] != 1 || got.Status2xx[last] != 1 {
			t.Fatalf("GET history%s: %d %s", tc.query, rec.Code, rec.Body)
		}
		if len(got.Events) != 1 || got.Events[0].Kind != history.Deploy || got.Events[0].DeployID != done.ID {
			t.Fatalf("GET history%s: events %+v", tc.query, got.Events)
		}
	}
	var other SlotHistory
	if rec := call(t, h, httptest.NewRequest("GET", "/api/slots/b/history", nil), &other); rec.Code != 200 || other.Requests[len(other.Requests)-1] != 0 {
		t.Fatalf("slot b has slot a's requests: %s", rec.Body)
	}

	for _, tc := range []struct {
		path string
		code int
		want string
	}{
		{"/api/slots/a/history?range=2h", 400, "1h or 24h"},
		{"/api/slots/a/history?range=1h&range=24h", 400, "once"},
		{"/api/slots/a/history?range=%00", 400, "1h or 24h"},
		{"/api/slots/z/history", 404, `unknown slot \"z\"`},
		{"/api/slots/a%2Fb/history", 404, "unknown slot"},
	} {
		var e Error
		rec := call(t, h, httptest.NewRequest("GET", tc.path, nil), &e)
		if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.want) {
			t.Errorf("GET %s: %d %s, want %d with %q", tc.path, rec.Code, rec.Body, tc.code, tc.want)
		}
	}
	if rec := call(t, h, httptest.NewRequest("POST", "/api/slots/a/history", nil), nil); rec.Code != 405 || rec.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST history: %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
}
