package endpoints

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// docSection is the text of a document between a heading and the next
// heading of its level.
func docSection(t *testing.T, file, heading string) string {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(raw), "\n"+heading+"\n")
	if !ok {
		t.Fatalf("%s has no %q", file, heading)
	}
	level := strings.Fields(heading)[0]
	if end := strings.Index(rest, "\n"+level+" "); end >= 0 {
		rest = rest[:end]
	}
	return rest
}

var codeSpan = regexp.MustCompile("`([a-z_]+)`")

// TestDocsListEvents: docs/operating.md's table of audit events names exactly
// the events the code writes.
func TestDocsListEvents(t *testing.T) {
	var listed []string
	for _, line := range strings.Split(docSection(t, "../docs/operating.md", "## Logs and audit events"), "\n") {
		if first, _, ok := strings.Cut(strings.TrimPrefix(line, "| "), " |"); ok && strings.HasPrefix(line, "| `") && !strings.Contains(line, "| level |") {
			for _, m := range codeSpan.FindAllStringSubmatch(first, -1) {
				listed = append(listed, m[1])
			}
		}
	}
	slices.Sort(listed)
	want := slices.Sorted(slices.Values(auditEvents))
	if !slices.Equal(listed, want) {
		t.Errorf("docs/operating.md lists the events\n%v\nthe code writes\n%v", listed, want)
	}
}

// TestDocsListFamilyReasons: docs/operating.md names every reason a family is
// revoked for, in the event table and the metric table.
func TestDocsListFamilyReasons(t *testing.T) {
	events, metrics := docSection(t, "../docs/operating.md", "## Logs and audit events"), docSection(t, "../docs/operating.md", "## Metrics")
	for _, reason := range familyReasons {
		for name, text := range map[string]string{"event table": events, "metric table": metrics} {
			if !strings.Contains(text, "`"+reason+"`") {
				t.Errorf("docs/operating.md's %s does not name the reason %s", name, reason)
			}
		}
	}
}
