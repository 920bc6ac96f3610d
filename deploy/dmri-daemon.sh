#!/bin/sh
# dmri-daemon.sh: starts and stops one dmri daemon by its pid file, for the
# deploy playbooks (run on the host through ansible's `script` module).
#   dmri-daemon.sh start PIDFILE LOGFILE BINARY [ARGS...]
#   dmri-daemon.sh stop  PIDFILE BINARY TIMEOUT
# A pid file counts only if /proc/PID is alive, not a zombie, and runs BINARY
# (argv[0] of /proc/PID/cmdline), so a stale file or a recycled pid never
# stops a start nor gets a signal. Prints one line "changed: ..." or "ok: ..."
# (the playbooks report changed from it); exits non-zero on failure.
set -u

running() { # PIDFILE BINARY -> prints the pid when that daemon runs
    [ -r "$1" ] || return 1
    pid=$(head -c 32 "$1" 2>/dev/null | tr -dc 0-9)
    [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 1
    arg0=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null | head -n 1)
    [ "$arg0" = "$2" ] || return 1
    state=$(sed -n 's/^State:[[:space:]]*\([A-Z]\).*/\1/p' "/proc/$pid/status" 2>/dev/null)
    [ "$state" != Z ] || return 1
    echo "$pid"
}

cmd=${1:-}
case "$cmd" in
start)
    [ $# -ge 4 ] || { echo "usage: $0 start PIDFILE LOGFILE BINARY [ARGS...]" >&2; exit 2; }
    pidfile=$2 log=$3 bin=$4
    shift 3
    if pid=$(running "$pidfile" "$bin"); then
        echo "ok: $bin already running (pid $pid)"
        exit 0
    fi
    [ -x "$bin" ] || { echo "$bin: not installed (run ansible_setup.yml)" >&2; exit 1; }
    mkdir -p "$(dirname "$pidfile")" "$(dirname "$log")"
    # New session, no terminal, stdin closed, output to the log: survives
    # the end of the SSH session. In a non-interactive shell the background
    # child is no group leader, so setsid execs in place and $! is the pid.
    setsid nohup "$@" >>"$log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    sleep 1
    if pid=$(running "$pidfile" "$bin"); then
        echo "changed: started $bin (pid $pid), log $log"
        exit 0
    fi
    echo "$bin exited at once; the end of its log $log:" >&2
    tail -n 20 "$log" >&2
    rm -f "$pidfile"
    exit 1
    ;;
stop)
    [ $# -eq 4 ] || { echo "usage: $0 stop PIDFILE BINARY TIMEOUT" >&2; exit 2; }
    pidfile=$2 bin=$3 timeout=$4
    if ! pid=$(running "$pidfile" "$bin"); then
        if [ -e "$pidfile" ]; then
            rm -f "$pidfile"
            echo "changed: $bin not running; stale pid file removed"
        else
            echo "ok: $bin not running"
        fi
        exit 0
    fi
    kill -TERM "$pid" 2>/dev/null
    i=0
    while [ $i -lt $((timeout * 5)) ] && running "$pidfile" "$bin" >/dev/null; do
        sleep 0.2
        i=$((i + 1))
    done
    how="SIGTERM"
    if running "$pidfile" "$bin" >/dev/null; then
        how="SIGKILL after ${timeout} s"
        kill -KILL "$pid" 2>/dev/null
        i=0
        while [ $i -lt 25 ] && running "$pidfile" "$bin" >/dev/null; do
            sleep 0.2
            i=$((i + 1))
        done
        if running "$pidfile" "$bin" >/dev/null; then
            echo "$bin (pid $pid) survived SIGKILL" >&2
            exit 1
        fi
    fi
    rm -f "$pidfile"
    echo "changed: stopped $bin (pid $pid) with $how"
    ;;
*)
    echo "usage: $0 start|stop ..." >&2
    exit 2
    ;;
esac
