package endpoints

import (
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestUnusedGrantIsReportedOnce: a grant never used at the guard within
// five minutes is reported once at warn; a used one never is.
func TestUnusedGrantIsReportedOnce(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	a := newAuditor(zap.New(core))
	t0 := time.Now()
	a.issued("fam-used", grant{clientID: "c1", subject: "alice"}, "authorization_code", t0)
	a.issued("fam-idle", grant{clientID: "c2", subject: "bob"}, "authorization_code", t0)
	a.used("fam-used", t0.Add(time.Second))
	a.reportUnused(t0.Add(4 * time.Minute))
	if n := logs.FilterMessage(eventTokenNeverUsed).Len(); n != 0 {
		t.Fatalf("reported after 4 minutes: %d", n)
	}
	a.reportUnused(t0.Add(5 * time.Minute))
	a.reportUnused(t0.Add(6 * time.Minute))
	idle := logs.FilterMessage(eventTokenNeverUsed).All()
	if len(idle) != 1 || idle[0].Level != zapcore.WarnLevel || idle[0].ContextMap()["client_id"] != "c2" || idle[0].ContextMap()["event"] != eventTokenNeverUsed {
		t.Fatalf("unused reports: %v", idle)
	}
	if used := logs.FilterMessage(eventGrantFirstUsed).All(); len(used) != 1 || used[0].ContextMap()["grant"] != "fam-used" {
		t.Fatalf("first-use events: %v", used)
	}
	a.used("fam-idle", t0.Add(7*time.Minute)) // reported already: nothing more
	if n := logs.FilterMessage(eventGrantFirstUsed).Len(); n != 1 {
		t.Fatalf("a late first use after the report: %d events", n)
	}
}
