#!/usr/bin/env bash
# Compares, in one run and alternating, the throughput of
#   (a) reverse_proxy alone,
#   (b) the same behind oauth2_server with a valid token,
#   (c) oauth2_server answering 401 to a request without a token,
# with wrk on loopback. Usage: bench/guard.sh [rounds] [seconds]
# Needs Go; installs wrk with apt-get when it is missing. With
# OAUTH2_BENCH_POSTGRES=<dsn> the oauth2_server site keeps its state in
# that PostgreSQL database (see bench/sites.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
seconds=${2:-5}

. bench/sites.sh
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
