# Shared helpers of the peer benchmark scripts (sourced).

# CPU seconds (utime+stime) of every process now alive, excluding the PIDs given.
cpu_seconds_except() {
    local exclude=" $* "
    local total=0 pid f
    for f in /proc/[0-9]*/stat; do
        pid=${f#/proc/}; pid=${pid%/stat}
        [[ $exclude == *" $pid "* ]] && continue
        total=$(( total + $(awk '{sub(/^.*\) /, ""); print $12 + $13}' "$f" 2>/dev/null || echo 0) ))
    done
    echo "scale=2; $total / $(getconf CLK_TCK)" | bc
}

busy_check() {
    echo "--- top before the run (other heavy processes disturb the figures):"
    top -bn1 | head -12 | tail -6
}

# Busy CPU seconds of the whole machine so far (all CPUs; from /proc/stat).
machine_busy_seconds() {
    awk '/^cpu / {print ($2 + $3 + $4 + $7 + $8 + $9) / '"$(getconf CLK_TCK)"'}' /proc/stat
}

# CPU seconds (utime+stime) of the given live PIDs together.
pids_cpu_seconds() {
    local total=0 p
    for p in "$@"; do
        total=$(( total + $(awk '{sub(/^.*\) /, ""); print $12 + $13}' /proc/$p/stat 2>/dev/null || echo 0) ))
    done
    echo "scale=2; $total / $(getconf CLK_TCK)" | bc
}
