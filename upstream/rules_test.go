package upstream

import "testing"

func TestRulesAdmit(t *testing.T) {
	groups := map[string]any{"groups": []any{"staff", "mcp-users"}, "tier": "gold", "level": float64(3), "admin": true}
	for _, tc := range []struct {
		name  string
		rules Rules
		id    Identity
		want  bool
	}{
		{"no rules admit everyone", Rules{}, Identity{Subject: "x"}, true},
		{"verified domain", Rules{Domains: []string{"example.com"}}, Identity{Email: "alice@Example.COM"}, true},
		{"other domain", Rules{Domains: []string{"example.com"}}, Identity{Email: "mallory@example.com.evil.test"}, false},
		{"subdomain is another domain", Rules{Domains: []string{"example.com"}}, Identity{Email: "bob@eng.example.com"}, false},
		{"unverified e-mail is no e-mail", Rules{Domains: []string{"example.com"}}, Identity{Email: ""}, false},
		{"listed e-mail", Rules{Emails: []string{"contractor@example.org"}}, Identity{Email: "Contractor@example.org"}, true},
		{"claim array contains", Rules{Claims: []ClaimRule{{"groups", "mcp-users"}}}, Identity{Claims: groups}, true},
		{"claim array lacks", Rules{Claims: []ClaimRule{{"groups", "admins"}}}, Identity{Claims: groups}, false},
		{"claim string equals", Rules{Claims: []ClaimRule{{"tier", "gold"}}}, Identity{Claims: groups}, true},
		{"claim number", Rules{Claims: []ClaimRule{{"level", "3"}}}, Identity{Claims: groups}, true},
		{"claim boolean", Rules{Claims: []ClaimRule{{"admin", "true"}}}, Identity{Claims: groups}, true},
		{"missing claim", Rules{Claims: []ClaimRule{{"dept", "x"}}}, Identity{Claims: groups}, false},
		{"org", Rules{Orgs: []string{"example-org"}}, Identity{Orgs: []string{"other", "Example-Org"}}, true},
		{"team", Rules{Teams: []string{"example-org/mcp-users"}}, Identity{Teams: []string{"example-org/mcp-users"}}, true},
		{"team of another org", Rules{Teams: []string{"example-org/mcp-users"}}, Identity{Teams: []string{"other-org/mcp-users"}}, false},
		{"user", Rules{Users: []string{"octocat"}}, Identity{PreferredUsername: "OctoCat"}, true},
		{"user by id", Rules{Users: []string{"583231"}}, Identity{UserID: "583231", PreferredUsername: "renamed"}, true},
		{"user by github:id", Rules{Users: []string{"github:0583231"}}, Identity{UserID: "583231"}, true},
		{"another id", Rules{Users: []string{"583231"}}, Identity{UserID: "583232", PreferredUsername: "583231"}, false},
		{"rules are OR-ed", Rules{Domains: []string{"example.com"}, Users: []string{"octocat"}}, Identity{Email: "x@other.test", PreferredUsername: "octocat"}, true},
		{"none matches", Rules{Domains: []string{"example.com"}, Orgs: []string{"o"}}, Identity{Email: "x@other.test", Orgs: []string{"p"}}, false},
		{"Kelvin sign in the domain", Rules{Domains: []string{"kaiser.test"}}, Identity{Email: "alice@\u212aaiser.test"}, false},
		{"long s in the domain", Rules{Domains: []string{"bass.test"}}, Identity{Email: "alice@ba\u017fs.test"}, false},
		{"Kelvin sign in a listed address", Rules{Emails: []string{"kim@example.com"}}, Identity{Email: "\u212aim@example.com"}, false},
		{"non-ASCII local part", Rules{Emails: []string{"bjorn@example.com"}}, Identity{Email: "bj\u00f6rn@example.com"}, false},
		{"the domain follows the last @", Rules{Domains: []string{"example.com"}}, Identity{Email: `"x@example.com"@evil.test`}, false},
		{"an IDN domain, either form", Rules{Domains: []string{"xn--mnchen-3ya.de"}}, Identity{Email: "a@m\u00fcnchen.de"}, true},
		{"Kelvin sign in an org", Rules{Orgs: []string{"kaiser"}}, Identity{Orgs: []string{"\u212aaiser"}}, false},
		{"Kelvin sign in a team", Rules{Teams: []string{"o/kaiser"}}, Identity{Teams: []string{"o/\u212aaiser"}}, false},
		{"Kelvin sign in a login", Rules{Users: []string{"kim"}}, Identity{PreferredUsername: "\u212aim"}, false},
	} {
		rules, err := tc.rules.Normalized()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got := rules.Admit(&tc.id); got != tc.want {
			t.Errorf("%s: Admit = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestNormalizeUser(t *testing.T) {
	for in, want := range map[string]string{"583231": "id:583231", "github:583231": "id:583231", "OctoCat": "login:octocat", "github:": "", "gitlab:5": "", "0": "", "github:x": "", "\u212aim": "", "99999999999999999999": ""} {
		got, err := normalizeUser(in)
		if got != want || (want == "") != (err != nil) {
			t.Errorf("normalizeUser(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
