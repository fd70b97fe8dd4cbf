#!/usr/bin/env bash
# Measures every hot path of the server against its ceiling on this
# machine, in one run with alternating rounds, and prints the table of
# issue 15 with the ratios (quote those: these machines are noisy).
#
#   bench/perf.sh [rounds] [seconds]
#
# Ceilings come from micro-benchmarks in the repo (storage/bolt
# BenchmarkCeiling*, endpoints BenchmarkCeilingES256Sign, the CPU time
# BenchmarkRefreshRotationParallel measures a rotation takes, the CPU
# the machine spends on a client_credentials token, an introspection and
# a proxied request while wrk runs, against which BenchmarkGuardCachedToken
# gives the guard's own cost) and from Caddy itself (`respond`, plain
# `reverse_proxy`); the paths from the benchmarks of the token endpoint
# and from wrk on loopback against a Caddy built with the module; with
# PostgreSQL installed, rotations on a throw-away cluster with one and
# three nodes as well. Needs Go; installs wrk with apt-get when it is
# missing.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
seconds=${2:-5}
cores=$(nproc)

. bench/sites.sh

# metric FILE BENCH UNIT: the value before UNIT on BENCH's line.
metric() { awk -v b="$2" -v u="$3" '$1 ~ "^"b"(-[0-9]+)?$" { for (i = 2; i <= NF; i++) if ($i == u) print $(i-1) }' "$1"; }
# median of the numbers on stdin.
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2] + v[NR/2+1]) / 2 }'; }

go test -c -o "$work/bolt.test" ./storage/bolt
go test -c -o "$work/endpoints.test" ./endpoints

cat >"$work/cc.lua" <<'LUA'
wrk.method = "POST"
wrk.body = "grant_type=client_credentials"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic YmVuY2g6YmVuY2gtc2VjcmV0LTAxMjM0NTY3ODlhYmNkZWY="
LUA
cat >"$work/introspect.lua" <<LUA
wrk.method = "POST"
wrk.body = "token=$token"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Authorization"] = "Basic cnM6cnMtc2VjcmV0LTAxMjM0NTY3ODlhYmNkZWY="
LUA

rps() { wrk -t2 -c64 -d"${seconds}s" "$@" | awk '/^Requests\/sec/ { print $2 }'; }
# busy: the clock ticks all cores have spent busy (user, nice, system,
# irq, softirq) since boot; wrk and Caddy share the machine, so the CPU a
# request takes is the difference around a run over its requests.
busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 }' /proc/stat; }
hz=$(getconf CLK_TCK)
# all_ticks / stolen: the clock ticks of all cores, and those the
# hypervisor gave to other machines (steal), since boot.
all_ticks() { awk '/^cpu / { t = 0; for (i = 2; i <= 9; i++) t += $i; print t }' /proc/stat; }
stolen() { awk '/^cpu / { print $9 }' /proc/stat; }
# rps_cpu NAME ARGS...: records NAME's requests/s and its CPU µs a request.
rps_cpu() {
	local name=$1 before after out
	shift
	before=$(busy)
	out=$(wrk -t2 -c64 -d"${seconds}s" "$@")
	after=$(busy)
	echo "$name $(awk '/^Requests\/sec/ { print $2 }' <<<"$out")" >>"$work/http.txt"
	echo "${name}_cpu $(awk -v t=$((after - before)) -v hz="$hz" '/ requests in / { print t / hz * 1e6 / $1 }' <<<"$out")" >>"$work/http.txt"
}

ticks0=$(all_ticks) stolen0=$(stolen)
for r in $(seq "$rounds"); do
	echo "round $r/$rounds" >&2
	"$work/bolt.test" -test.run '^$' -test.bench 'CeilingUpdate|CeilingGroupCommit|CeilingRotations' -test.benchtime "${seconds}s" >>"$work/go.txt"
	"$work/endpoints.test" -test.run '^$' -test.bench 'RefreshRotation$|RefreshRotationParallel|CeilingES256Sign|GuardCachedToken' -test.benchtime "${seconds}s" >>"$work/go.txt"
	echo "respond $(rps http://127.0.0.1:9901/)" >>"$work/http.txt"
	rps_cpu proxy http://127.0.0.1:9902/
	echo "guard $(rps -H "Authorization: Bearer $token" http://127.0.0.1:9903/)" >>"$work/http.txt"
	rps_cpu cc -s "$work/cc.lua" http://127.0.0.1:9903/oauth/token
	rps_cpu introspect -s "$work/introspect.lua" http://127.0.0.1:9903/oauth/introspect
done
"$work/bolt.test" -test.run '^$' -test.bench 'StoragePerFamily' -test.benchtime 20000x >>"$work/go.txt"
"$work/bolt.test" -test.run '^$' -test.bench 'SweepWhileWriting' -test.benchtime 1000000x >>"$work/go.txt"

http() { awk -v k="$1" '$1 == k { print $2 }' "$work/http.txt" | median; }
update_ms=$(metric "$work/go.txt" BenchmarkCeilingUpdate ns/op | median | awk '{ print $1 / 1e6 }')
commit_rate=$(metric "$work/go.txt" BenchmarkCeilingGroupCommit writes/s | median)
sign_us=$(metric "$work/go.txt" BenchmarkCeilingES256Sign ns/op | median | awk '{ print $1 / 1e3 }')
rot_p50=$(metric "$work/go.txt" BenchmarkRefreshRotation p50-ms | median)
store_rate=$(metric "$work/go.txt" BenchmarkCeilingRotations rotations/s | median)
rot_rate=$(metric "$work/go.txt" 'BenchmarkRefreshRotationParallel/bolt' rotations/s | median)
rot_cpu=$(metric "$work/go.txt" 'BenchmarkRefreshRotationParallel/bolt' cpu-µs/rotation | median)
pg_rate=$(metric "$work/go.txt" 'BenchmarkRefreshRotationParallel/postgres' rotations/s | median)
pg3_rate=$(metric "$work/go.txt" 'BenchmarkRefreshRotationParallel/postgres-3-nodes' rotations/s | median)
family=$(metric "$work/go.txt" BenchmarkStoragePerFamily bytes/family | median)
guard_us=$(metric "$work/go.txt" BenchmarkGuardCachedToken ns/op | median | awk '{ print $1 / 1e3 }')
respond=$(http respond) proxy=$(http proxy) proxy_cpu=$(http proxy_cpu) guard=$(http guard) cc=$(http cc) cc_cpu=$(http cc_cpu) introspect=$(http introspect) introspect_cpu=$(http introspect_cpu)
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

echo
steal=$(awk -v s=$(($(stolen) - stolen0)) -v t=$(($(all_ticks) - ticks0)) 'BEGIN { printf "%.0f", 100 * s / t }')
echo "$(date -u +%F), $cores cores, $rounds rounds of ${seconds}s (medians; ratio = share of the ceiling reached;"
echo "the hypervisor took $steal% of the cores' time during the run, which no ceiling allows for):"
echo
echo "| path | ceiling on this machine | measured | ratio |"
echo "|---|---|---|---:|"
printf '| one client rotating (p50 latency) | bbolt Update with fsync %.2f ms | %.2f ms | %s |\n' "$update_ms" "$rot_p50" "$(ratio "$update_ms" "$rot_p50")"
printf '| 32 clients rotating | group commit, 32 writers: %.0f commits/s | %.0f rotations/s | %s |\n' "$commit_rate" "$rot_rate" "$(ratio "$rot_rate" "$commit_rate")"
cc_ceiling=$(awk -v s="$sign_us" -v c="$cores" 'BEGIN { print c * 1e6 / s }')
rot_cpu_ceiling=$(awk -v u="$rot_cpu" -v c="$cores" 'BEGIN { print c * 1e6 / u }')
printf '| 32 clients rotating, against the CPU they take | %.0f µs of CPU a rotation on %d cores: %.0f/s | %.0f rotations/s | %s |\n' "$rot_cpu" "$cores" "$rot_cpu_ceiling" "$rot_rate" "$(ratio "$rot_rate" "$rot_cpu_ceiling")"
printf '| 32 clients rotating, the store alone (no HTTP, no signing) | group commit, 32 writers: %.0f commits/s | %.0f rotations/s | %s |\n' "$commit_rate" "$store_rate" "$(ratio "$store_rate" "$commit_rate")"
if [ "$pg_rate" != nan ]; then # PostgreSQL installed (the benchmarks start a throw-away cluster)
	printf '| 32 clients rotating, PostgreSQL, one node | — | %.0f rotations/s | |\n' "$pg_rate"
	printf '| 32 clients rotating, PostgreSQL, three nodes | — | %.0f rotations/s | |\n' "$pg3_rate"
fi
printf '| client_credentials, ES256 | ES256 sign %.0f µs on %d cores: %.0f/s | %.0f tokens/s | %s |\n' "$sign_us" "$cores" "$cc_ceiling" "$cc" "$(ratio "$cc" "$cc_ceiling")"
cc_cpu_ceiling=$(awk -v u="$cc_cpu" -v c="$cores" 'BEGIN { print c * 1e6 / u }')
printf '| client_credentials, against the CPU they take (Caddy and wrk) | %.0f µs of CPU a token on %d cores: %.0f/s | %.0f tokens/s | %s |\n' "$cc_cpu" "$cores" "$cc_cpu_ceiling" "$cc" "$(ratio "$cc" "$cc_cpu_ceiling")"
printf '| introspection, ES256 | Caddy respond: %.0f req/s | %.0f req/s | %s |\n' "$respond" "$introspect" "$(ratio "$introspect" "$respond")"
introspect_cpu_ceiling=$(awk -v u="$introspect_cpu" -v c="$cores" 'BEGIN { print c * 1e6 / u }')
printf '| introspection, against the CPU it takes (Caddy and wrk) | %.0f µs of CPU a request on %d cores: %.0f/s | %.0f req/s | %s |\n' "$introspect_cpu" "$cores" "$introspect_cpu_ceiling" "$introspect" "$(ratio "$introspect" "$introspect_cpu_ceiling")"
printf '| guard, ES256 cached token | plain reverse_proxy: %.0f req/s | %.0f req/s | %s |\n' "$proxy" "$guard" "$(ratio "$guard" "$proxy")"
printf '| guard, against the CPU it adds | a proxied request: %.0f µs of CPU (Caddy and wrk) | the guard adds %.1f µs | %s |\n' "$proxy_cpu" "$guard_us" "$(ratio "$proxy_cpu" "$(awk -v a="$proxy_cpu" -v b="$guard_us" 'BEGIN { print a + b }')")"
printf '| storage per refresh family | — | %.0f bytes | |\n' "$family"
for sweep in all-expired one-in-ten-expired; do
	b="BenchmarkSweepWhileWriting/$sweep"
	printf '| sweep of 1,000,000 records, %s | the same writes with no sweep: mean %.2f ms, longest %.1f ms, %.0f over 20 ms | mean write wait %.2f ms, longest %.1f ms, %.0f over 20 ms | |\n' "${sweep//-/ }" \
		"$(metric "$work/go.txt" "$b" mean-write-ms-alone)" "$(metric "$work/go.txt" "$b" max-write-ms-alone)" "$(metric "$work/go.txt" "$b" writes-over-20ms-alone)" \
		"$(metric "$work/go.txt" "$b" mean-write-ms)" "$(metric "$work/go.txt" "$b" max-write-ms)" "$(metric "$work/go.txt" "$b" writes-over-20ms)"
done
