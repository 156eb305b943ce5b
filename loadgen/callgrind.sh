#!/usr/bin/env bash
# Instructions imrelay executes per delivered event, counted by callgrind:
# a figure that repeats to a fraction of a percent, where CPU time on this
# shared VM varies by a fifth from run to run. User space only (syscalls
# and the kernel's TCP work are not counted), 200 users so valgrind keeps up.
#
#   loadgen/callgrind.sh [label]      (after cargo build --release --workspace --bins)
#   IMRELAY=/other/build/imrelay loadgen/callgrind.sh old    (another build, same load)
#   COUNT=rcsim loadgen/callgrind.sh  (rcsim's instructions per posted message
#                                      instead, clients on its DDP directly;
#                                      RCSIM=/other/build/rcsim for another build)
#
# Counting starts once the clients are connected (callgrind_control -z) and
# ends after both passes (-d), so start-up and logins are left out.
set -euo pipefail
cd "$(dirname "$0")/.."
label=${1:-run}
count=${COUNT:-imrelay}
case "$count" in
  imrelay) bin=$(realpath "${IMRELAY:-target/release/imrelay}"); mode=imrelay ;;
  rcsim) bin=$(realpath "${RCSIM:-target/release/rcsim}"); mode=direct ;;
  *) echo "COUNT is imrelay or rcsim" >&2; exit 2 ;;
esac
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install -y valgrind)" >&2; exit 2; }
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# loadgen kills the processes it starts with SIGKILL, which callgrind cannot
# survive to write its counts; so the one it starts is this shell, and
# valgrind, left running, is dumped and stopped here.
cat >"$out/$count" <<EOF
#!/usr/bin/env bash
valgrind --tool=callgrind --callgrind-out-file=$out/cg.out $bin "\$@" 2>$out/valgrind.log
EOF
chmod +x "$out/$count"

./target/release/loadgen --users 200 --clients 1 --room-size 10 --messages 1000 --rate 100 \
  --modes "$mode" "--$count" "$out/$count" --json "$out/loadgen.json" 2>"$out/loadgen.log" &
lg=$!
for _ in $(seq 1 900); do
  grep -aq "clients connected" "$out/loadgen.log" && break
  sleep 0.1
done
vg=$(ps -eo pid,args | grep -- "[-]-callgrind-out-file=$out/cg.out" | awk '{print $1}' | head -1)
[ -n "$vg" ] || { echo "valgrind did not start; see $out/valgrind.log" >&2; cat "$out/loadgen.log" >&2; exit 1; }
callgrind_control -z "$vg" >/dev/null 2>&1
wait "$lg" || true
callgrind_control -d "$vg" >/dev/null 2>&1
kill "$vg" 2>/dev/null || true
# valgrind is not this shell's child, so it cannot be waited for: poll, bounded.
for _ in $(seq 1 100); do
  kill -0 "$vg" 2>/dev/null || break
  sleep 0.1
done

python3 - "$out" "$label" "$count" "$mode" <<'PY'
import glob, json, sys
out, label, count, mode = sys.argv[1:]
m = json.load(open(f"{out}/loadgen.json"))["modes"][mode]
passes = [m["full_speed"], m["half_rate"]]
dump = [f for f in glob.glob(f"{out}/cg.out.*")]
if not dump:
    sys.exit("callgrind wrote no dump")
ir = max(int(l.split()[1]) for f in dump for l in open(f) if l.startswith("summary:"))
if count == "imrelay":
    n, unit = sum(p["events"] for p in passes), "event"
else:
    n, unit = sum(p["messages"] for p in passes), "posted message"
print(f"{label}: {count}, {n} {unit}s, {ir:,} instructions, {ir / n:,.0f} per {unit}")
PY
