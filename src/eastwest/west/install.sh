#!/bin/sh
# Install a western hub node: the base runner and its pinned dependencies, no Airflow, no jobs.
#   install.sh ROOT REQUIREMENTS_WEST PACKAGE_DIR [PYTHON]
# PACKAGE_DIR is the eastwest package (src/eastwest); only its __init__.py and west/ are copied.
# ROOT gets venv/ (pinned requirements), opt/eastwest/ (the base runner) and the data directories;
# jobs arrive later as content-addressed bundles in ROOT/bundles/. Register the hub with
# eastwest_root=ROOT, eastwest_python=ROOT/venv/bin/python.
set -eu
root=$1
requirements=$2
package_dir=$3
python=${4:-python3}

"$python" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' \
  || { echo "install.sh: Python 3.11 is required" >&2; exit 1; }
[ -f "$package_dir/west/runner.py" ] || { echo "install.sh: $package_dir is not the eastwest package" >&2; exit 1; }
mkdir -p "$root/opt" "$root/scratch" "$root/chunks" "$root/jobs" "$root/bundles"
"$python" -m venv "$root/venv"
"$root/venv/bin/pip" install --no-cache-dir --quiet --requirement "$requirements"
rm -rf "$root/opt/eastwest"
mkdir -p "$root/opt/eastwest/west"
cp "$package_dir/__init__.py" "$root/opt/eastwest/__init__.py"
cp "$package_dir"/west/*.py "$root/opt/eastwest/west/"
PYTHONPATH="$root/opt" "$root/venv/bin/python" -B -c 'import pyarrow, polars, eastwest.west.runner' >/dev/null
echo "western node installed in $root"
