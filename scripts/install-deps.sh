#!/usr/bin/env bash
# Installs every dependency of tether with apt-get (Debian 12). Idempotent: packages already
# present are not touched, and apt-get runs only when something is missing.
set -euo pipefail
packages=(
  build-essential cmake pkg-config
  libeigen3-dev libceres-dev libboost-dev
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  libcli11-dev nlohmann-json3-dev
  python3 python3-matplotlib python3-numpy   # experiment plots, numpy benchmark baselines
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
