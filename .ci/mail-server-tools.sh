#!/usr/bin/env bash
# Installs the mail-server tools the export e2e test drives (rbldnsd, dig, postmap).
# Postfix is preseeded with "No configuration" so the install never prompts and never
# starts a mail server; postmap only needs a folder with an empty main.cf (see the test).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
# Root in CI containers; elsewhere go through sudo (keeping DEBIAN_FRONTEND).
SUDO=()
if [ "$(id -u)" != 0 ]; then SUDO=(sudo --preserve-env=DEBIAN_FRONTEND); fi
echo "postfix postfix/main_mailer_type select No configuration" | "${SUDO[@]}" debconf-set-selections
"${SUDO[@]}" apt-get update
"${SUDO[@]}" apt-get install -y --no-install-recommends rbldnsd dnsutils postfix
