#!/usr/bin/env bash
# Static checks for systemd/imrelay.service: `systemd-analyze verify` must print
# nothing about our unit, and `systemd-analyze security` reports (but does not
# enforce) the exposure score. Works without systemd running as PID 1 (containers).
#
# Usage: tests/systemd/verify.sh      (from anywhere; paths are relative to the repo root)
# Env:   IMRELAY_BIN  built imrelay binary that ExecStart is pointed at for the check
#                     (default target/debug/imrelay; verify insists the binary exists)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO_ROOT"

UNIT_SRC="systemd/imrelay.service"
UNIT_NAME="imrelay.service"
INSTALLED_BIN="/usr/local/bin/imrelay"

die() { echo "verify.sh: FAIL: $*" >&2; exit 1; }

export SYSTEMD_COLORS=0 SYSTEMD_PAGER=cat SYSTEMD_LOG_COLOR=0

if ! command -v systemd-analyze >/dev/null 2>&1; then
  echo "==> systemd-analyze missing; installing systemd"
  if [[ $(id -u) -ne 0 ]]; then die "systemd-analyze not found and not root to apt-get install systemd"; fi
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends systemd
fi
echo "==> $(systemd-analyze --version | head -n1)"

[[ -f "$UNIT_SRC" ]] || die "unit file not found: $REPO_ROOT/$UNIT_SRC"

IMRELAY_BIN="${IMRELAY_BIN:-target/debug/imrelay}"
case "$IMRELAY_BIN" in
  /*) ;;
  *) IMRELAY_BIN="$REPO_ROOT/$IMRELAY_BIN" ;;
esac
if [[ ! -x "$IMRELAY_BIN" ]]; then
  die "imrelay binary not found or not executable: $IMRELAY_BIN (build it first with 'cargo build', or set IMRELAY_BIN)"
fi
[[ "$IMRELAY_BIN" =~ [[:space:]] ]] && die "IMRELAY_BIN must not contain whitespace: $IMRELAY_BIN"

# The unit's ExecStart names the installed path, which verify requires to exist.
# Check a temporary copy whose ExecStart points at the built binary instead.
n_exec=$(grep -c "^ExecStart=${INSTALLED_BIN}\( \|$\)" "$UNIT_SRC" || true)
[[ "$n_exec" -eq 1 ]] || die "expected exactly one 'ExecStart=${INSTALLED_BIN} ...' line in $UNIT_SRC, found $n_exec"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/unitcheck.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$WORK/ok" "$WORK/neg"

while IFS= read -r line || [[ -n "$line" ]]; do
  case "$line" in
    "ExecStart=${INSTALLED_BIN}" | "ExecStart=${INSTALLED_BIN} "*)
      line="ExecStart=${IMRELAY_BIN}${line#"ExecStart=${INSTALLED_BIN}"}" ;;
  esac
  printf '%s\n' "$line"
done < "$UNIT_SRC" > "$WORK/ok/$UNIT_NAME"
grep -q "^ExecStart=${IMRELAY_BIN}\( \|$\)" "$WORK/ok/$UNIT_NAME" || die "ExecStart rewrite failed"

VERIFY_OPTS=(--man=no)
# Where supported, make verify's exit status reflect only our unit, not the host's units.
if systemd-analyze --help 2>&1 | grep -q -- '--recursive-errors'; then
  VERIFY_OPTS+=(--recursive-errors=no)
fi

# run_verify UNITFILE -> sets VERIFY_OUT (all output), VERIFY_RC, OURS (lines about our unit)
run_verify() {
  VERIFY_RC=0
  VERIFY_OUT=$(systemd-analyze verify "${VERIFY_OPTS[@]}" "$1" 2>&1) || VERIFY_RC=$?
  # verify may also complain about the host's own units; only lines naming our
  # unit file or unit count. (The temp dir name does not contain "imrelay".)
  OURS=$(printf '%s\n' "$VERIFY_OUT" | grep -F "$UNIT_NAME" || true)
}

# Self-test: a unit with a typo'd key must be caught, or the filter below is vacuous.
sed 's/^ProtectClock=yes$/ProtectClok=yes/' "$WORK/ok/$UNIT_NAME" > "$WORK/neg/$UNIT_NAME"
grep -q '^ProtectClok=yes$' "$WORK/neg/$UNIT_NAME" || die "self-test: could not inject a bad key"
run_verify "$WORK/neg/$UNIT_NAME"
printf '%s\n' "$OURS" | grep -q 'ProtectClok' \
  || die "self-test: verify did not flag an unknown key in $UNIT_NAME; output was: $VERIFY_OUT"
echo "==> self-test ok: verify flags a broken unit ($(printf '%s\n' "$OURS" | grep -F ProtectClok | head -n1 | sed "s|$WORK/neg/||"))"

echo "==> systemd-analyze verify ${VERIFY_OPTS[*]} $UNIT_SRC (ExecStart=$IMRELAY_BIN)"
run_verify "$WORK/ok/$UNIT_NAME"
if [[ -n "$VERIFY_OUT" ]]; then
  echo "--- verify output (all of it) ---"
  printf '%s\n' "$VERIFY_OUT"
  echo "--- end ---"
else
  echo "(verify printed nothing)"
fi
if [[ -n "$OURS" ]]; then
  echo "verify.sh: warnings about $UNIT_NAME:" >&2
  printf '%s\n' "$OURS" >&2
  die "systemd-analyze verify reported problems with $UNIT_SRC"
fi
[[ "$VERIFY_RC" -eq 0 ]] || die "systemd-analyze verify exited $VERIFY_RC"
echo "==> verify: OK"

# Informational only: exposure score (needs --offline, systemd >= 250).
echo "==> systemd-analyze security --offline=true (informational)"
SEC_RC=0
SEC_OUT=$(systemd-analyze security --offline=true --no-pager "$WORK/ok/$UNIT_NAME" 2>&1) || SEC_RC=$?
score=$(printf '%s\n' "$SEC_OUT" | grep -F 'Overall exposure level' || true)
if [[ -n "$score" ]]; then
  printf '%s\n' "$SEC_OUT" | grep '^✗' || true
  echo "$score"
else
  echo "(security check unavailable here, exit $SEC_RC: $(printf '%s\n' "$SEC_OUT" | head -n3))"
fi

echo "systemd: 1 passed, 0 failed"
