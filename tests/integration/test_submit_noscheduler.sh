#!/bin/bash
# test_submit_noscheduler: dmri-submit without a scheduler — --help works,
# bad arguments exit 2 naming the argument, and with nothing listening it
# gives up after --timeout with the "no answer" hint and exit status 1.
# Run: bash test_submit_noscheduler.sh --build-dir BUILD
set -u
build=""
while [ $# -gt 0 ]; do
    case "$1" in
    --build-dir) build="$2"; shift 2 ;;
    *) echo "usage: $0 --build-dir BUILD" >&2; exit 2 ;;
    esac
done
exe="$build/client/dmri-submit"
[ -x "$exe" ] || { echo "FAIL: $exe not built"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }

"$exe" --help >"$tmp/out" 2>"$tmp/err"; rc=$?
[ $rc -eq 0 ] || bad "--help exited $rc"
grep -q "usage: dmri-submit" "$tmp/out" || bad "--help printed no usage"
grep -q -- "--scheduler HOST:PORT" "$tmp/out" || bad "--help does not describe --scheduler"

# Bad values: exit 2, the argument named, nothing attempted.
check_usage() {
    local what="$1"; shift
    "$exe" "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
    [ $rc -eq 2 ] || bad "dmri-submit $*: exit $rc, expected 2"
    grep -q -- "$what" "$tmp/err" || bad "dmri-submit $*: message does not name $what: $(cat "$tmp/err")"
}
check_usage "--timeout" --timeout 0 X
check_usage "--timeout" --timeout abc X
check_usage "--scheduler" --scheduler nohost X
check_usage "--scheduler" --scheduler host:99999 X
check_usage "--b0-threshold" --b0-threshold -5 X
check_usage "--bench-noop" --bench-noop zero
check_usage "no subject" --quiet
check_usage "--bogus" --bogus X
DMRI_SCHEDULER=garbage check_usage "DMRI_SCHEDULER" X

# Nothing listening on port 1: the no-answer message after ~2 s, exit 1.
start=$(date +%s%N)
"$exe" --timeout 2 --scheduler 127.0.0.1:1 X >"$tmp/out" 2>"$tmp/err"; rc=$?
ms=$(( ($(date +%s%N) - start) / 1000000 ))
echo "no scheduler: exit $rc after $ms ms: $(cat "$tmp/err")"
[ $rc -eq 1 ] || bad "no scheduler: exit $rc, expected 1"
grep -q "dmri-submit: no answer from scheduler at 127.0.0.1:1 (is dmri-scheduler running? through ssh: ssh -L 8786:127.0.0.1:8786 HEAD)" "$tmp/err" \
    || bad "no scheduler: message"
[ $ms -ge 1900 ] && [ $ms -lt 3500 ] || bad "no scheduler: took $ms ms with --timeout 2"

# The same through $DMRI_SCHEDULER.
DMRI_SCHEDULER=127.0.0.1:1 "$exe" --timeout 0.5 X >"$tmp/out" 2>"$tmp/err"; rc=$?
[ $rc -eq 1 ] || bad "DMRI_SCHEDULER: exit $rc"
grep -q "no answer from scheduler at 127.0.0.1:1 " "$tmp/err" || bad "DMRI_SCHEDULER not used"

[ $fail -eq 0 ] && echo "test_submit_noscheduler: ok"
exit $fail
