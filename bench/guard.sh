#!/usr/bin/env bash
# Compares, in one run and alternating, the throughput of
#   (a) reverse_proxy alone,
#   (b) the same behind oauth2_server with a valid token,
#   (c) oauth2_server answering 401 to a request without a token,
# with wrk on loopback. Usage: bench/guard.sh [rounds] [seconds]
# Needs Go; installs wrk with apt-get when it is missing. With
# OAUTH2_BENCH_POSTGRES=<dsn> the oauth2_server site keeps its state in
# that PostgreSQL database (schema oauth2_bench, its generated key sealed
# with a fixed bench-only storage_key) instead of a bbolt file.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
seconds=${2:-5}

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
[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $token" http://127.0.0.1:9903/)" = 200 ] || { echo "token refused" >&2; exit 1; }
[ "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9903/)" = 401 ] || { echo "no 401" >&2; exit 1; }

# run NAME URL [header]: prints "NAME req/s p50 p99"
run() {
	local name=$1 url=$2 out
	if [ $# -gt 2 ]; then
		out=$(wrk -t2 -c64 -d"${seconds}s" --latency -H "$3" "$url")
	else
		out=$(wrk -t2 -c64 -d"${seconds}s" --latency "$url")
	fi
	local rps p50 p99
	rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
	p50=$(awk '$1=="50%" {print $2}' <<<"$out")
	p99=$(awk '$1=="99%" {print $2}' <<<"$out")
	printf '%-28s %10s req/s   p50 %-9s p99 %s\n' "$name" "$rps" "$p50" "$p99"
}

results=$work/results
for r in $(seq "$rounds"); do
	echo "round $r" >&2
	run "a:reverse_proxy" http://127.0.0.1:9902/ | tee -a "$results"
	run "b:oauth2_server+token" http://127.0.0.1:9903/ "Authorization: Bearer $token" | tee -a "$results"
	run "c:oauth2_server-401" http://127.0.0.1:9903/ | tee -a "$results"
done

awk '
	/^a:/ {a += $2; na++}
	/^b:/ {b += $2; nb++}
	/^c:/ {c += $2; nc++}
	END {
		printf "\nmeans over %d rounds: a %.0f  b %.0f  c %.0f req/s\n", na, a/na, b/nb, c/nc
		printf "b/a = %.2f   c/a = %.2f\n", (b/nb)/(a/na), (c/nc)/(a/na)
	}' "$results"
