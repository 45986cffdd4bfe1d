#!/usr/bin/env bash
# Re-make a tool environment's hashed lock file (resources/toolenvs/PACKAGE-VERSION.txt), e.g.
#   scripts/lock_toolenv.sh onnx2tf 1.29.24
# Needs network (PyPI) and uv (installed into a throwaway venv). Resolves for Python 3.11 on Linux
# x86_64 and aarch64 and keeps the lock only if both give the same set (they do for onnx2tf).
# uv ignores the upper bound of a package's Requires-Python: backports-strenum 1.3.x says <3.11,
# so it is held at 1.2.8 (what pip itself picks on 3.11).
set -euo pipefail
package=$1 version=$2
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3.11 -m venv "$work/uv" && "$work/uv/bin/pip" install -q uv
echo "$package==$version" > "$work/in.txt"
echo "backports-strenum==1.2.8" > "$work/constraints.txt"
for platform in x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu; do
  "$work/uv/bin/uv" pip compile "$work/in.txt" -c "$work/constraints.txt" -q \
    --python-version 3.11 --python-platform "$platform" --generate-hashes \
    --index-url https://pypi.org/simple --no-header --no-annotate -o "$work/$platform.txt"
done
cmp "$work/x86_64-unknown-linux-gnu.txt" "$work/aarch64-unknown-linux-gnu.txt"
out="$here/resources/toolenvs/$package-$version.txt"
{
  echo "# The $package tool environment (workflows/toolenv.py), pinned and hashed: pip installs it with"
  echo "# --require-hashes --no-deps --only-binary :all:, so every file is the one recorded here."
  echo "# Linux (x86_64 and aarch64), Python 3.11. Made with: scripts/lock_toolenv.sh $package $version"
  cat "$work/x86_64-unknown-linux-gnu.txt"
} > "$out"
echo "wrote $out ($(grep -c '^[a-z]' "$out") packages)"
