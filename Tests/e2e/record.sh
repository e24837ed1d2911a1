#!/bin/sh
# Recordings end to end, inside the sandbox (run by inside-sandbox.sh): real
# nested runs recorded, replayed here and (by scripts/e2e, from /out/record)
# on the host, with the same JSON stop for stop; a recorder killed with
# SIGKILL in the middle of a nested run leaves a file that opens.
set -e
fail() { echo "e2e record: FAILED: $*"; exit 1; }
dir=/out/record
mkdir -p "$dir"

# record NAME ARGS...: `nestdbg run --batch --json ARGS --record`, then the replay
# must print the same lines and end with the same status.
record() {
    name=$1
    shift
    nestdbg run --batch --json "$@" --record "$dir/$name.nestdbg" > "$dir/$name.jsonl" && live=0 || live=$?
    nestdbg replay "$dir/$name.nestdbg" --batch --json > "$dir/$name-replay.jsonl" && replayed=0 || replayed=$?
    cmp -s "$dir/$name.jsonl" "$dir/$name-replay.jsonl" || fail "$name: the replay's JSON differs from the live run's"
    [ "$live" = "$replayed" ] || fail "$name: the live run ended with status $live, the replay with $replayed"
    echo "record $name: $(wc -l < "$dir/$name.jsonl") stops printed live and replayed alike (status $live), $(wc -c < "$dir/$name.nestdbg") bytes"
}
record demo --exits 300
record selfcheck --scenario selfcheck --exits 100000
record patch-break --stops patch --break HLT --exits 100
record events --scenario events --exits 60
# --break over the recording: the replay stops at the first hit (HLT: with npt=0 there is no NPF).
nestdbg replay "$dir/demo.nestdbg" --batch --json --break HLT | tail -n 1 | grep -q '"name":"HLT"' \
    || fail "replay --break HLT did not end at a HLT exit"
nestdbg replay "$dir/demo.nestdbg" --info | grep -q "kvm_amd: .*nested=1" || fail "the session row lacks kvm_amd's parameters"

# SIGKILL in the middle: every stop committed before the kill is in the file.
: > "$dir/killed.txt"
nestdbg run --batch --exits 1000000 --timeout 600 --record "$dir/killed.nestdbg" > "$dir/killed.txt" 2>&1 &
pid=$!
i=0
until [ "$(wc -l < "$dir/killed.txt")" -ge 200 ]; do
    i=$((i + 1))
    [ $i -lt 600 ] || fail "the run to be killed printed no 200 stops in 60 s"
    sleep 0.1
done
kill -9 $pid
wait $pid 2>/dev/null || true
[ -e "$dir/killed.nestdbg-wal" ] || fail "killed mid-run, yet no WAL beside the recording"
last=$(grep '^#' "$dir/killed.txt" | tail -n 1 | sed 's/^#\([0-9]*\).*/\1/')
stops=$(nestdbg replay "$dir/killed.nestdbg" --info | sed -n 's/^stops: \([0-9]*\).*/\1/p')
# At most 64 stops (the recorder's in-flight bound) are ever handed over and not yet committed.
[ -n "$stops" ] && [ "$stops" -gt $((last - 64)) ] || fail "killed: the file holds $stops stops, stop #$last was printed"
nestdbg export "$dir/killed.nestdbg" --jsonl | sed 's/^{"index":\([0-9]*\),.*/\1/' > "$dir/killed-indices.txt"
seq 0 $((stops - 1)) | cmp -s - "$dir/killed-indices.txt" || fail "killed: the stops in the file are not #0 to #$((stops - 1))"
echo "record: SIGKILL after stop #$last printed: the file opens with $stops stops, #0 to #$((stops - 1))"
