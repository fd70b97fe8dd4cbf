# Sourced by the bench scripts: installs wrk when it is missing, builds
# Caddy with the module into $work (removed on exit), and starts three
# sites on loopback sharing one upstream:
#   http://127.0.0.1:9901  respond "ok"                 (the upstream)
#   http://127.0.0.1:9902  reverse_proxy to it           (plain proxy)
#   http://127.0.0.1:9903  oauth2_server + reverse_proxy (clients bench
#                          and rs, the latter may introspect)
# and leaves a client_credentials access token in $token. With
# OAUTH2_BENCH_POSTGRES=<dsn> the oauth2_server keeps its state in that
# database (schema oauth2_bench, its generated key sealed with a fixed
# bench-only storage_key) instead of a bbolt file.

if ! command -v wrk >/dev/null; then
	echo "installing wrk" >&2
	SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
	$SUDO apt-get update -qq && $SUDO apt-get install -y -qq wrk >/dev/null
fi

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

echo "building caddy with the module" >&2
go build -o "$work/caddy" ./cmd/caddy

storage="storage $work/oauth.db"
if [ -n "${OAUTH2_BENCH_POSTGRES:-}" ]; then
	storage="storage postgres {
			dsn $OAUTH2_BENCH_POSTGRES
			schema oauth2_bench
		}
		storage_key $(printf bench-only-storage-key-012345678 | base64)"
fi

cat >"$work/Caddyfile" <<CADDY
{
	admin off
	persist_config off
	auto_https off
}
http://127.0.0.1:9901 {
	respond "ok" 200
}
http://127.0.0.1:9902 {
	reverse_proxy 127.0.0.1:9901 {
		transport http {
			keepalive_idle_conns_per_host 128
		}
	}
}
http://127.0.0.1:9903 {
	oauth2_server {
		issuer http://127.0.0.1:9903
		resource http://127.0.0.1:9903
		$storage
		client bench {
			secret bench-secret-0123456789abcdef
			grant_types client_credentials
		}
		client rs {
			secret rs-secret-0123456789abcdef
			grant_types client_credentials
			introspect
		}
	}
	reverse_proxy 127.0.0.1:9901 {
		transport http {
			keepalive_idle_conns_per_host 128
		}
	}
}
CADDY
XDG_DATA_HOME=$work XDG_CONFIG_HOME=$work "$work/caddy" run --config "$work/Caddyfile" >"$work/caddy.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
	curl -fsS http://127.0.0.1:9902/ >/dev/null 2>&1 && break
	sleep 0.1
done

token=$(curl -fsS -u bench:bench-secret-0123456789abcdef -d grant_type=client_credentials http://127.0.0.1:9903/oauth/token |
	sed -n 's/.*"access_token":"\([^"]*\)".*/\1/p' || true)
[ -n "$token" ] || { echo "no token" >&2; cat "$work/caddy.log" >&2; exit 1; }
