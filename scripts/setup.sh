#!/usr/bin/env bash
# npm run setup: everything `npm start` and `npm test` need on a fresh machine, for users and CI alike.
# A plain shell script, so it runs before `npm ci`. Idempotent: it installs only what is missing and
# says, one line per thing, what it found or installed.
#  - chromium: the browser of the browser tests, and SwiftShader, the CPU Vulkan driver that gives
#    WebGPU (Chromium's, and Dawn's in Node) an adapter where there is no GPU;
#  - libvulkan1: the Vulkan loader Dawn (the `webgpu` package) opens;
#  - mesa-vulkan-drivers, Mesa 23 or later: lavapipe, the second CPU Vulkan driver (Debian 13's own;
#    on Debian 12 from Debian's bookworm-backports suite, since Debian 12's Mesa 22 is too old for Dawn);
#  - firefox-esr: the second browser (WebGPU through wgpu, with naga as a second WGSL compiler).
# Then `npm ci`. It never downloads a browser (.puppeteerrc.cjs) and writes no archive's host name:
# where a suite must be added, the archive is the one this machine's own apt sources already use.
# SETUP_SKIP_NPM=1 skips `npm ci` (CI and tests that only need the system packages).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "setup: $*"; }
# Where apt's sources and the OS's name are (SETUP_APT_DIR, SETUP_OS_RELEASE: for this script's tests).
apt_dir=${SETUP_APT_DIR:-/etc/apt}
os_release=${SETUP_OS_RELEASE:-/etc/os-release}

# The URI of the archive this machine already takes Debian's suite $1 from, read from its own apt sources
# (deb822 .sources stanzas or one-line .list entries), so that no archive host is written here.
debian_archive_uri() {
  local f codename=$1
  for f in "$apt_dir"/sources.list.d/*.sources; do
    [ -e "$f" ] || continue
    # deb822 stanzas: print the URIs of a stanza whose Suites name the release itself.
    awk -v suite="$codename" '
      BEGIN { RS = ""; FS = "\n" }
      {
        uris = ""; hit = 0
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/) { uris = $i; sub(/^URIs:[ \t]*/, "", uris) }
          if ($i ~ /^Suites:/) { n = split($i, s, /[ \t]+/); for (j = 2; j <= n; j++) if (s[j] == suite) hit = 1 }
        }
        if (hit && uris != "") { split(uris, u, /[ \t]+/); print u[1]; exit }
      }' "$f"
  done
  for f in "$apt_dir"/sources.list "$apt_dir"/sources.list.d/*.list; do
    [ -e "$f" ] || continue
    # "deb [options] URI suite components": the URI is the first field after deb and its options.
    sed -E 's/#.*//; s/\[[^]]*\]//' "$f" | awk -v suite="$codename" '$1 == "deb" && $3 == suite { print $2; exit }'
  done
}
# `scripts/setup.sh --archive-uri CODENAME` prints the archive a suite would be added from, and exits.
if [ "${1:-}" = --archive-uri ]; then
  uri=$(debian_archive_uri "${2:?usage: scripts/setup.sh --archive-uri CODENAME}" | head -n 1)
  [ -n "$uri" ] || { echo "setup: no apt source for Debian's ${2} suite in $apt_dir" >&2; exit 1; }
  echo "$uri"
  exit 0
fi

if [ ! -r "$os_release" ] || [ "$(. "$os_release" && echo "${ID:-}")" != debian ] ||
  ! command -v apt-get >/dev/null || ! command -v dpkg-query >/dev/null; then
  id=$( [ -r "$os_release" ] && . "$os_release" && echo "${PRETTY_NAME:-${ID:-unknown}}" || echo unknown)
  cat >&2 <<TXT
setup: this is not Debian ($id), so nothing was installed. Install these yourself, then run npm ci:
  - a Vulkan loader (Debian/Ubuntu: libvulkan1; Fedora: vulkan-loader);
  - a WebGPU adapter: a GPU's Vulkan driver, or Mesa 23+'s lavapipe (Debian/Ubuntu: mesa-vulkan-drivers;
    Fedora: mesa-vulkan-drivers), or SwiftShader (ships with Chromium);
  - Chromium (set PUPPETEER_EXECUTABLE_PATH if it is not /usr/bin/chromium) for the browser tests;
  - Firefox 141+ or Firefox ESR 140+ (set FIREFOX_EXECUTABLE_PATH if it is not on PATH).
TXT
  exit 1
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "setup: not root and no sudo: run this as root" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
codename=$(. "$os_release" && echo "${VERSION_CODENAME:-}")

apt_updated=0
apt_update() { [ "$apt_updated" -eq 1 ] || { say "apt-get update"; $sudo apt-get update -qq; apt_updated=1; }; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
version() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null; }
apt_install() { apt_update; $sudo apt-get install -y -qq "$@" >/dev/null; }

for pkg in chromium libvulkan1 firefox-esr; do
  if installed "$pkg"; then
    say "$pkg $(version "$pkg") is installed"
  else
    say "installing $pkg ..."
    apt_install "$pkg"
    say "$pkg $(version "$pkg") installed"
  fi
done

# lavapipe: Mesa's Vulkan drivers, 23 or later (Dawn needs their Vulkan 1.3 features).
mesa_major() { version mesa-vulkan-drivers | sed -E 's/^([0-9]+:)?([0-9]+).*/\2/'; }
lavapipe_ok() {
  installed mesa-vulkan-drivers && [ "$(mesa_major)" -ge 23 ] 2>/dev/null && [ -e /usr/share/vulkan/icd.d/lvp_icd.json ]
}
if lavapipe_ok; then
  say "mesa-vulkan-drivers $(version mesa-vulkan-drivers) (lavapipe) is installed"
elif [ "$codename" = bookworm ]; then
  if ! grep -rqs 'bookworm-backports' "$apt_dir/sources.list" "$apt_dir/sources.list.d/"; then
    uri=$(debian_archive_uri "$codename" | head -n 1)
    if [ -z "$uri" ]; then
      echo "setup: no apt source for Debian's $codename suite found, so bookworm-backports cannot be added;" \
        "add it yourself and install mesa-vulkan-drivers from it" >&2
      exit 1
    fi
    say "adding Debian's bookworm-backports suite from $uri ($apt_dir/sources.list.d/debian-backports.sources)"
    printf '%s\n' 'Types: deb' "URIs: $uri" 'Suites: bookworm-backports' 'Components: main' \
      'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' |
      $sudo tee "$apt_dir/sources.list.d/debian-backports.sources" >/dev/null
    apt_updated=0
  fi
  say "installing mesa-vulkan-drivers (lavapipe) from bookworm-backports ..."
  apt_install -t bookworm-backports mesa-vulkan-drivers
  say "mesa-vulkan-drivers $(version mesa-vulkan-drivers) installed"
else
  say "installing mesa-vulkan-drivers (lavapipe) ..."
  apt_install mesa-vulkan-drivers
  say "mesa-vulkan-drivers $(version mesa-vulkan-drivers) installed"
fi
lavapipe_ok || { echo "setup: lavapipe needs Mesa 23 or later; mesa-vulkan-drivers is $(version mesa-vulkan-drivers)" >&2; exit 1; }

if [ "${SETUP_SKIP_NPM:-0}" = 1 ]; then
  say "npm ci skipped (SETUP_SKIP_NPM=1)"
else
  say "npm ci"
  npm ci --no-audit --no-fund
fi
say "done: npm start trains, npm test tests (WEBGPU_ADAPTER=auto|lavapipe|swiftshader|hardware picks the adapter)"
