#!/usr/bin/env bash
# Installs the Debian packages gemmaserve builds and tests with, if any are missing.
set -euo pipefail
# webp (cwebp/dwebp/gif2webp) is a test oracle: image_webp_test compares our decoder with it.
pkgs=(cmake ninja-build g++ nlohmann-json3-dev libgtest-dev libcpp-httplib-dev libcli11-dev
      libstb-dev libbenchmark-dev libwebp-dev webp)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
# Node.js may come from elsewhere than Debian (the test oracles only need the commands).
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "gemmaserve needs these Debian packages: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
