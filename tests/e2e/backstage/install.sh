#!/usr/bin/env bash
# Installs this directory's node_modules from package-lock.json, reusing a copy
# cached under ~/.cache/pltf-e2e/<key> when one exists. The key hashes the lock
# file, the Node version and the platform, because better-sqlite3 is compiled
# for one Node ABI. From nothing it runs `npm ci` (2-4 minutes here, mostly
# compiling better-sqlite3), then saves node_modules for next time.
#
#   tests/e2e/backstage/install.sh          # idempotent; prints where node_modules came from
#   PLTF_E2E_CACHE=/elsewhere install.sh    # another cache root; PLTF_E2E_CACHE= (empty) disables it
set -euo pipefail
cd "$(dirname "$0")"

command -v node >/dev/null || { echo "install.sh: node is not installed (Node 20+ is needed)" >&2; exit 1; }
command -v npm >/dev/null || { echo "install.sh: npm is not installed" >&2; exit 1; }

key="$( { cat package-lock.json; node -p 'process.version + " " + process.platform + " " + process.arch + " " + process.versions.modules'; } \
  | sha256sum | cut -c1-16)"
stamp=node_modules/.pltf-install-key
cache_root="${PLTF_E2E_CACHE-$HOME/.cache/pltf-e2e}"
cached="${cache_root:+$cache_root/$key}"

if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ]; then
  echo "install.sh: node_modules is current ($key)"
  exit 0
fi

rm -rf node_modules
if [ -n "$cached" ] && [ -f "$cached/node_modules/.pltf-install-key" ]; then
  # Hard links when the cache is on the same file system (instant), a copy otherwise.
  cp -al "$cached/node_modules" node_modules 2>/dev/null || { rm -rf node_modules; cp -a "$cached/node_modules" node_modules; }
  echo "install.sh: node_modules restored from $cached"
  exit 0
fi

# better-sqlite3 has no prebuilt binary reachable here, so its install script compiles it.
npm ci --no-audit --no-fund --loglevel=error
echo "$key" > "$stamp"
echo "install.sh: node_modules installed with npm ci ($key)"

if [ -n "$cached" ]; then
  # Save through a temporary name and a rename, so a concurrent or interrupted run never
  # leaves a half-copied cache entry behind.
  if mkdir -p "$cache_root" 2>/dev/null; then
    tmp="$(mktemp -d "$cache_root/.tmp.XXXXXX")"
    if cp -a node_modules "$tmp/node_modules" && mv -T "$tmp" "$cached" 2>/dev/null; then
      echo "install.sh: saved to $cached"
    else
      rm -rf "$tmp"
    fi
    # Keep the three most recent entries.
    ls -1dt "$cache_root"/*/ 2>/dev/null | tail -n +4 | xargs -r rm -rf
  fi
fi
