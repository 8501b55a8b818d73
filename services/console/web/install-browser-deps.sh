#!/usr/bin/env bash
# Installs what services/console's browser test (TestBrowser) needs on a
# fresh Debian machine: Debian's chromium (playwright never downloads a
# browser) and the pinned npm devDependencies (playwright-core) from
# package-lock.json. Node.js 20 must already be installed.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x /usr/bin/chromium ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium
fi
npm ci --no-audit --no-fund
