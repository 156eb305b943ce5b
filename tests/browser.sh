#!/usr/bin/env bash
# The demo page in a real headless browser (Debian's chromium, driven by
# playwright-core): alice and bob chat live through imrelay demo.
# Needs target/debug/imrelay (cargo build) and /usr/bin/chromium
# (apt-get install chromium). Screenshot: target/demo-screenshot.png.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [[ ! -x /usr/bin/chromium ]]; then
  echo "browser.sh: /usr/bin/chromium is missing: apt-get install -y chromium" >&2
  exit 1
fi
if [[ ! -x "${IMRELAY_BIN:-target/debug/imrelay}" ]]; then
  echo "browser.sh: build imrelay first (cargo build)" >&2
  exit 1
fi
cd tests/browser
npm ci --no-audit --no-fund
node --test
