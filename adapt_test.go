package oauth2server

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddytest"

	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestAdaptCaddyfileExample pins what `caddy adapt` makes of
// Caddyfile.example: the directive's place in the route (after
// forward_auth, before reverse_proxy) and every JSON field name.
// Regenerate with `go test -run TestAdaptCaddyfileExample -update`.
func TestAdaptCaddyfileExample(t *testing.T) {
	src, err := os.ReadFile("Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	const golden = "testdata/Caddyfile.example.json"
	if *update {
		out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, nil)
		if err != nil {
			t.Fatal(err)
		}
		var pretty bytes.Buffer
		if err := json.Indent(&pretty, out, "", "\t"); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if !caddytest.CompareAdapt(t, "Caddyfile.example", string(src), "caddyfile", string(want)) {
		t.Fatal("adapted Caddyfile.example differs from " + golden)
	}
}

// TestDirectiveOrder checks that oauth2_server sorts after basic_auth and
// forward_auth and before reverse_proxy without an `order` line.
func TestDirectiveOrder(t *testing.T) {
	src := `http://localhost:9999 {
		reverse_proxy localhost:9000
		oauth2_server {
			issuer http://localhost:9999
			resource http://localhost:9999
		}
		basic_auth /oauth/authorize {
			alice ` + bcryptHash + `
		}
	}`
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, r, o := bytes.Index(out, []byte(`"handler":"authentication"`)), bytes.Index(out, []byte(`"handler":"reverse_proxy"`)), bytes.Index(out, []byte(`"handler":"oauth2_server"`))
	if b < 0 || r < 0 || o < 0 || !(b < o && o < r) {
		t.Fatalf("handler order basic_auth=%d oauth2_server=%d reverse_proxy=%d in %s", b, o, r, out)
	}
}

// TestCaddyfilesAreFormatted: the example and the end-to-end Caddyfile are
// as `caddy fmt` writes them (Caddy warns at every start otherwise).
func TestCaddyfilesAreFormatted(t *testing.T) {
	for _, name := range []string{"Caddyfile.example", "e2e/Caddyfile"} {
		src, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if formatted := caddyfile.Format(src); !bytes.Equal(formatted, src) {
			t.Errorf("%s is not formatted: run `caddy fmt --overwrite %s`", name, name)
		}
	}
}
