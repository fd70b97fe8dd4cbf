package oauth2server

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/caddy-oauth2/caddy-oauth2-server/storage/bolt"
	"github.com/caddy-oauth2/caddy-oauth2-server/storage/postgres"
)

// configFields calls fn with every JSON field of the handler, its users,
// clients, logins, registration, scopes and rate limits, and of the
// storage modules: the configuration an operator can write.
func configFields(fn func(typ, field, name string)) {
	for _, v := range []any{Handler{}, User{}, Client{}, Login{}, ClaimRule{}, DynamicRegistration{}, ScopeDefinition{}, RateLimit{}, ScopeRequirement{},
		bolt.Module{}, postgres.Module{}} {
		typ := reflect.TypeOf(v)
		for i := range typ.NumField() {
			f := typ.Field(i)
			if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); f.IsExported() && name != "" && name != "-" {
				fn(typ.Name(), f.Name, name)
			}
		}
	}
}

// TestReferenceNamesEveryField: every configuration field (see
// configFields) is named in the option reference.
func TestReferenceNamesEveryField(t *testing.T) {
	raw, err := os.ReadFile("docs/reference.md")
	if err != nil {
		t.Fatal(err)
	}
	ref := string(raw)
	configFields(func(typ, field, name string) {
		// A code span starting with the name: `name`, `name <value>`,
		// or the JSON key "name".
		if !strings.Contains(ref, "`"+name+"`") && !strings.Contains(ref, "`"+name+" ") && !strings.Contains(ref, `"`+name+`"`) {
			t.Errorf("docs/reference.md does not name %s.%s (JSON %q)", typ, field, name)
		}
	})
}
