package endpoints

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// readmeSection is the text of the README between a heading and the next
// heading of its level.
func readmeSection(t *testing.T, heading string) string {
	t.Helper()
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(raw), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("the README has no %q", heading)
	}
	level := strings.Fields(heading)[0]
	if end := strings.Index(rest, "\n"+level+" "); end >= 0 {
		rest = rest[:end]
	}
	return rest
}

var codeSpan = regexp.MustCompile("`([a-z_]+)`")

// TestREADMEListsEvents: the README's table of audit events names exactly
// the events the code writes.
func TestREADMEListsEvents(t *testing.T) {
	var listed []string
	for _, line := range strings.Split(readmeSection(t, "### Logs and audit events"), "\n") {
		if first, _, ok := strings.Cut(strings.TrimPrefix(line, "| "), " |"); ok && strings.HasPrefix(line, "| `") && !strings.Contains(line, "| level |") {
			for _, m := range codeSpan.FindAllStringSubmatch(first, -1) {
				listed = append(listed, m[1])
			}
		}
	}
	slices.Sort(listed)
	want := slices.Sorted(slices.Values(auditEvents))
	if !slices.Equal(listed, want) {
		t.Errorf("the README lists the events\n%v\nthe code writes\n%v", listed, want)
	}
}

// TestREADMEListsFamilyReasons: the README names every reason a family is
// revoked for, in the event table and the metric table.
func TestREADMEListsFamilyReasons(t *testing.T) {
	events, metrics := readmeSection(t, "### Logs and audit events"), readmeSection(t, "### Metrics")
	for _, reason := range familyReasons {
		for name, text := range map[string]string{"event table": events, "metric table": metrics} {
			if !strings.Contains(text, "`"+reason+"`") {
				t.Errorf("the README's %s does not name the reason %s", name, reason)
			}
		}
	}
}
