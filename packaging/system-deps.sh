#!/usr/bin/env bash
# Installs (as root) or checks (otherwise) the Debian libraries Michi needs at run time and in tests:
# PortAudio for sounddevice, Qt's X/EGL/font libraries, a user-space PulseAudio for the virtual
# audio device the tests loop sound through, and Xvfb for screenshots. Idempotent: a no-op when
# everything is present.
set -euo pipefail
packages=(
  libportaudio2                         # sounddevice
  libegl1 libgl1 libxkbcommon0 libxkbcommon-x11-0 libfontconfig1 libdbus-1-3   # Qt 6
  libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-xinerama0 libxcb-randr0 libxcb-render-util0 libxcb-image0
  fonts-dejavu-core                     # readable text in offscreen/Xvfb renders
  pulseaudio pulseaudio-utils libasound2-plugins   # virtual audio device for tests
  xvfb xauth                            # real X screen for screenshots
  espeak-ng                             # real speech in voice tests (enrollment checks, imports)
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "Installing system packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "Michi needs these system packages: ${missing[*]}" >&2
  echo "Install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
