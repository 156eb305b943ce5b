#!/usr/bin/env bash
# Instructions imrelay executes per delivered event, counted by callgrind:
# a figure that repeats to a fraction of a percent, where CPU time on this
# shared VM varies by a fifth from run to run. User space only (syscalls
# and the kernel's TCP work are not counted), 200 users so valgrind keeps up.
#
#   loadgen/callgrind.sh [label]      (after cargo build --release --workspace --bins)
#   IMRELAY=/other/build/imrelay loadgen/callgrind.sh old    (another build, same load)
#
# Counting starts once the clients are connected (callgrind_control -z) and
# ends after both passes (-d), so start-up and logins are left out.
set -euo pipefail
cd "$(dirname "$0")/.."
label=${1:-run}
bin=$(realpath "${IMRELAY:-target/release/imrelay}")
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install -y valgrind)" >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# loadgen kills its relay with SIGKILL, which callgrind cannot survive to
# write its counts; so the relay it starts is this shell, and valgrind,
# left running, is dumped and stopped here.
cat >"$out/imrelay" <<EOF
#!/usr/bin/env bash
valgrind --tool=callgrind --callgrind-out-file=$out/cg.out $bin "\$@" 2>$out/valgrind.log
EOF
chmod +x "$out/imrelay"

./target/release/loadgen --users 200 --clients 1 --room-size 10 --messages 1000 --rate 100 \
  --modes imrelay --imrelay "$out/imrelay" --json "$out/loadgen.json" 2>"$out/loadgen.log" &
lg=$!
for _ in $(seq 1 600); do
  grep -aq "clients connected" "$out/loadgen.log" && break
  sleep 0.1
done
vg=$(ps -eo pid,args | grep -- "[-]-callgrind-out-file=$out/cg.out" | awk '{print $1}' | head -1)
[ -n "$vg" ] || { echo "valgrind did not start; see $out/valgrind.log" >&2; cat "$out/loadgen.log" >&2; exit 1; }
callgrind_control -z "$vg" >/dev/null 2>&1
wait "$lg" || true
callgrind_control -d "$vg" >/dev/null 2>&1
kill "$vg" 2>/dev/null || true
sleep 1

python3 - "$out" "$label" <<'PY'
import glob, json, sys
out, label = sys.argv[1], sys.argv[2]
m = json.load(open(f"{out}/loadgen.json"))["modes"]["imrelay"]
events = m["full_speed"]["events"] + m["half_rate"]["events"]
dump = [f for f in glob.glob(f"{out}/cg.out.*")]
if not dump:
    sys.exit("callgrind wrote no dump")
ir = max(int(l.split()[1]) for f in dump for l in open(f) if l.startswith("summary:"))
print(f"{label}: {events} events, {ir:,} instructions, {ir / events:,.0f} per event")
PY
