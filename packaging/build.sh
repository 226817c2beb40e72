#!/usr/bin/env bash
# Builds the one-folder desktop bundle from this checkout: dist/michi/ (see docs/PACKAGING.md).
#
#   packaging/build.sh [--record] [PyInstaller options, e.g. --distpath DIR --workpath DIR --clean]
#
# --record also writes the build time and bundle size to benchmarks/results/package_<time>.json.
# PY picks the interpreter (default .venv/bin/python, which needs the `dev` extra: PyInstaller).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}

record=0
if [ "${1:-}" = "--record" ]; then
  record=1
  shift
fi
distpath=dist
workpath=build/pyinstaller
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do  # the bundle's location, to measure it afterwards
  case "${args[i]}" in
    --distpath) distpath=${args[i + 1]} ;;
    --distpath=*) distpath=${args[i]#--distpath=} ;;
  esac
done

if ! "$PY" -c "import PyInstaller" 2>/dev/null; then
  echo "PyInstaller is missing from $PY: run 'make package' (it installs the dev extra)" >&2
  exit 1
fi

start=$(date +%s.%N)
"$PY" -m PyInstaller --noconfirm --log-level WARN \
  --distpath dist --workpath "$workpath" "$@" packaging/michi.spec
end=$(date +%s.%N)

bundle="$distpath/michi"
build_seconds=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
bundle_bytes=$(du -sb "$bundle" | cut -f1)
echo "built $bundle in ${build_seconds} s: $(du -sh "$bundle" | cut -f1) ($bundle_bytes bytes)"
echo "check it with: QT_QPA_PLATFORM=offscreen $bundle/michi --self-test"

if [ "$record" = 1 ]; then
  BUILD_SECONDS=$build_seconds BUNDLE_BYTES=$bundle_bytes "$PY" - <<'EOF'
import json
import os
import platform
import time
from importlib.metadata import version
from pathlib import Path


def cpu_model() -> str:
    if os.path.exists("/proc/cpuinfo"):  # Linux: platform.processor() is empty there
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    return platform.processor()


record = {
    "build_seconds": float(os.environ["BUILD_SECONDS"]),
    "bundle_bytes": int(os.environ["BUNDLE_BYTES"]),
    "machine": {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
    },
    "versions": {name: version(name)
                 for name in ("pyinstaller", "pyinstaller-hooks-contrib", "torch", "PySide6-Essentials")},
}
path = Path("benchmarks/results") / f"package_{time.strftime('%Y%m%d-%H%M%S')}.json"
path.write_text(json.dumps(record, indent=2) + "\n")
print(f"recorded {path}")
EOF
fi
