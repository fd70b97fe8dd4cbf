// Command caddy is stock Caddy with its standard modules plus
// oauth2_server, for `go run ./cmd/caddy run --config Caddyfile.example`.
// Release builds use xcaddy (see build.sh and xcaddy.json).
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-oauth2/caddy-oauth2-server"
)

func main() {
	caddycmd.Main()
}
