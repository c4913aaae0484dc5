#!/usr/bin/env bash
# Installs what the i18n and accessibility tests use: GNU gettext (makemessages and msgfmt
# in tests/test_i18n.py), Debian's Chromium (Playwright drives it; Playwright's own browser
# download is not used), and axe-core into tests/e2e/node_modules (git-ignored), pinned by
# tests/e2e/package-lock.json.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
cd "$(dirname "$0")/.."
# Root in CI containers; elsewhere go through sudo (keeping DEBIAN_FRONTEND).
SUDO=()
if [ "$(id -u)" != 0 ]; then SUDO=(sudo --preserve-env=DEBIAN_FRONTEND); fi
"${SUDO[@]}" apt-get update
"${SUDO[@]}" apt-get install -y --no-install-recommends gettext chromium
if ! command -v npm >/dev/null; then
  "${SUDO[@]}" apt-get install -y --no-install-recommends npm
fi
npm ci --prefix tests/e2e --no-audit --no-fund
