#!/bin/sh
# Install a western hub node: the base runner and its pinned dependencies, no Airflow, no jobs.
#   install.sh ROOT REQUIREMENTS_WEST PACKAGE_DIR [PYTHON]
# PACKAGE_DIR is the eastwest package (src/eastwest); only its __init__.py and west/ are copied.
# ROOT gets venv/ (pinned requirements), opt/eastwest/ (the base runner), bin/eastwest-serve (the
# forced command of the east's key), limits.json (per-job memory and CPU limits, and how many jobs
# run at once) and the data directories; jobs arrive later as content-addressed bundles in
# ROOT/bundles/.
#
# Run it as root with HUB_USER=<an unprivileged system user> to give that user the data directories
# (and nothing else); then install the east's key for that user exactly as the script prints it.
# HUB_MAX_MEMORY_MB and HUB_MAX_CPU_SECONDS set the hub's per-job limits (defaults 8192 and 3600);
# HUB_SLOTS, how many jobs run at once (default: the CPUs, nproc); more wait in the hub's queue.
set -eu
root=$1
requirements=$2
package_dir=$3
python=${4:-python3}
hub_user=${HUB_USER:-}

"$python" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' \
  || { echo "install.sh: Python 3.11 is required" >&2; exit 1; }
[ -f "$package_dir/west/runner.py" ] || { echo "install.sh: $package_dir is not the eastwest package" >&2; exit 1; }
case "$root" in /*) ;; *) echo "install.sh: ROOT must be an absolute path" >&2; exit 1 ;; esac
case "$root" in *\'*|*\"*|*' '*) echo "install.sh: ROOT must not contain quotes or spaces" >&2; exit 1 ;; esac
[ "$hub_user" != root ] || { echo "install.sh: HUB_USER=root is refused; use an unprivileged user" >&2; exit 1; }
max_memory_mb=${HUB_MAX_MEMORY_MB:-8192}
max_cpu_seconds=${HUB_MAX_CPU_SECONDS:-3600}
slots=${HUB_SLOTS:-$(nproc)}
for value in "$max_memory_mb" "$max_cpu_seconds" "$slots"; do
  case "$value" in
    ''|*[!0-9]*|0)
      echo "install.sh: HUB_MAX_MEMORY_MB, HUB_MAX_CPU_SECONDS and HUB_SLOTS must be positive integers, not '$value'" >&2
      exit 1 ;;
  esac
done
mkdir -p "$root/opt" "$root/bin" "$root/scratch" "$root/chunks" "$root/jobs" "$root/bundles" "$root/log"
"$python" -m venv "$root/venv"
"$root/venv/bin/pip" install --no-cache-dir --quiet --requirement "$requirements"
rm -rf "$root/opt/eastwest"
mkdir -p "$root/opt/eastwest/west"
cp "$package_dir/__init__.py" "$root/opt/eastwest/__init__.py"
cp "$package_dir"/west/*.py "$root/opt/eastwest/west/"
cat > "$root/bin/eastwest-serve" <<SERVE
#!/bin/sh
# The forced command of the east's key: the runner, and nothing else.
PYTHONPATH='$root/opt' exec '$root/venv/bin/python' -B -P -m eastwest.west.serve --root '$root'
SERVE
chmod 0755 "$root/bin/eastwest-serve"
printf '{"max_memory_mb": %s, "max_cpu_seconds": %s, "slots": %s}\n' "$max_memory_mb" "$max_cpu_seconds" "$slots" \
  > "$root/limits.json"
if [ -n "$hub_user" ]; then
  for dir in scratch chunks jobs bundles log; do chown -R "$hub_user:" "$root/$dir"; done
fi
PYTHONPATH="$root/opt" "$root/venv/bin/python" -B -c 'import pyarrow, polars, eastwest.west.serve' >/dev/null
echo "western node installed in $root"
echo "install the east's key for ${hub_user:-the hub user} (in its authorized_keys) as:"
echo "  restrict,command=\"$root/bin/eastwest-serve\" <the east's public key>"
