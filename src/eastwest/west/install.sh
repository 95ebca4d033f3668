#!/bin/sh
# Install a western hub node: the runner and its pinned dependencies, no Airflow.
#   install.sh ROOT REQUIREMENTS_WEST SOURCE_DIR [PYTHON]
# ROOT gets venv/ (pinned requirements), opt/westnode/ (the runner and registered jobs) and the
# data directories; register the hub with eastwest_root=ROOT, eastwest_python=ROOT/venv/bin/python.
set -eu
root=$1
requirements=$2
source_dir=$3
python=${4:-python3}

"$python" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' \
  || { echo "install.sh: Python 3.11 is required" >&2; exit 1; }
mkdir -p "$root/opt" "$root/scratch" "$root/chunks" "$root/jobs"
"$python" -m venv "$root/venv"
"$root/venv/bin/pip" install --no-cache-dir --quiet --requirement "$requirements"
rm -rf "$root/opt/westnode"
cp -R "$source_dir" "$root/opt/westnode"
find "$root/opt/westnode" -name __pycache__ -prune -exec rm -rf {} +
"$root/venv/bin/python" -c 'import pyarrow, polars' >/dev/null
echo "western node installed in $root"
