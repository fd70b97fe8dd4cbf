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
		{"rules are OR-ed", Rules{Domains: []string{"example.com"}, Users: []string{"octocat"}}, Identity{Email: "x@other.test", PreferredUsername: "octocat"}, true},
		{"none matches", Rules{Domains: []string{"example.com"}, Orgs: []string{"o"}}, Identity{Email: "x@other.test", Orgs: []string{"p"}}, false},
	} {
		if got := tc.rules.Admit(&tc.id); got != tc.want {
			t.Errorf("%s: Admit = %v, want %v", tc.name, got, tc.want)
		}
	}
}
