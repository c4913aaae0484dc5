#!/usr/bin/env bash
# The Nu Html Checker (tests/html_checker.py): vnu.jar comes from npm with axe-core
# (tests/e2e/package.json, installed by .ci/browser-tools.sh); this makes sure Java runs it.
# vnu-jar's own postinstall would download a Java runtime, which cannot work here: Debian's is used.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
cd "$(dirname "$0")/.."
SUDO=()
if [ "$(id -u)" != 0 ]; then SUDO=(sudo --preserve-env=DEBIAN_FRONTEND); fi
if ! command -v java >/dev/null; then
  "${SUDO[@]}" apt-get install -y --no-install-recommends default-jre-headless
fi
java -version
test -f tests/e2e/node_modules/vnu-jar/build/dist/vnu.jar || npm ci --prefix tests/e2e --no-audit --no-fund
java -jar tests/e2e/node_modules/vnu-jar/build/dist/vnu.jar --version
