#!/usr/bin/env bash
# Install every Debian package the project needs; only what is missing.
set -euo pipefail
PKGS=(
  build-essential pkg-config linux-libc-dev
  libfdt-dev device-tree-compiler liburing-dev libcjson-dev libcriterion-dev
  libmicrohttpd-dev libseccomp-dev
  curl iproute2 qemu-system-x86 valgrind clang libclang-rt-14-dev
  python3 python3-yaml socat iputils-ping
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "deps: all ${#PKGS[@]} packages present"
  exit 0
fi
echo "deps: installing ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=sudo
  else
    echo "deps: missing packages (${missing[*]}); run 'make deps' as root or install them with apt-get" >&2
    exit 1
  fi
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
