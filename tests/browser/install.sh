#!/usr/bin/env bash
# Installs what the portal's browser test (tests/portal/test_portal_browser.py) needs:
# Debian's chromium, and the playwright Python package in the venv. Playwright's own
# browser download (`playwright install`) is not used: the test drives /usr/bin/chromium.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${VENV:-.venv}"

if ! command -v chromium >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core
fi
"$VENV/bin/python" -c "import playwright" 2>/dev/null || "$VENV/bin/pip" install --quiet "playwright>=1.45"
