package endpoints

import (
	"net/url"
	"testing"
)

// FuzzParseCallback: a callback query is accepted only with one state of
// at most 4 KiB and exactly one of code and error, each given once.
func FuzzParseCallback(f *testing.F) {
	f.Add("code=abc&state=xyz&iss=https%3A%2F%2Faccounts.google.com")
	f.Add("error=access_denied&error_description=cancelled&state=xyz")
	f.Add("code=a&code=b&state=x")
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := parseCallback(raw)
		if err != nil {
			return
		}
		q, perr := url.ParseQuery(raw)
		if perr != nil {
			t.Fatal("accepted an unparsable query")
		}
		if c.state == "" || (c.code == "") == (c.err == "") {
			t.Fatalf("accepted %+v", c)
		}
		for _, name := range []string{"code", "state", "iss", "error", "error_description"} {
			if len(q[name]) > 1 || len(q.Get(name)) > maxCallbackValue {
				t.Fatalf("accepted a repeated or oversized %s", name)
			}
		}
		if q.Get("state") != c.state || q.Get("code") != c.code || q.Get("iss") != c.iss {
			t.Fatalf("%+v is not what the query says", c)
		}
	})
}
