package upstream

import (
	"strings"
	"testing"
)

func TestNextLink(t *testing.T) {
	for header, want := range map[string]string{
		`<https://api.github.com/user/orgs?per_page=100&page=2>; rel="next", <https://api.github.com/user/orgs?per_page=100&page=3>; rel="last"`: "https://api.github.com/user/orgs?per_page=100&page=2",
		`<https://a.test/p1>; rel="prev", <https://a.test/p3>; REL="Next"`:                                                                       "https://a.test/p3",
		`<https://a.test/p3>; rel="next last"`:                                                                                                   "https://a.test/p3",
		`<https://a.test/p1>; rel="prev"`:                                                                                                        "",
		`https://a.test/p3; rel="next"`:                                                                                                          "",
		``:                                                                                                                                       "",
	} {
		if got := nextLink(header); got != want {
			t.Errorf("nextLink(%q) = %q, want %q", header, got, want)
		}
	}
}

// FuzzNextLink: whatever the header, nextLink never panics and returns
// only what stood between < and >.
func FuzzNextLink(f *testing.F) {
	f.Add(`<https://api.github.com/user/orgs?page=2>; rel="next", <https://api.github.com/user/orgs?page=3>; rel="last"`)
	f.Add(`<>; rel=next`)
	f.Add(`<a>;;;rel="next",`)
	f.Fuzz(func(t *testing.T, header string) {
		if next := nextLink(header); next != "" && !strings.Contains(header, "<"+next+">") {
			t.Fatalf("nextLink(%q) = %q", header, next)
		}
	})
}
