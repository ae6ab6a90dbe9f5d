#!/bin/bash
# /opt/extensions/pgbouncer-extension in the shipped layer: Lambda starts every executable in
# /opt/extensions, and this one runs the Python extension on the layer's own Python
# (/opt/pooler-python, see bundle_python.py), whatever the function's runtime is: nodejs24.x
# has no Python, and python3.13's is the runtime's.
#
# -I (isolated): the function's PYTHONPATH, PYTHONHOME and user site belong to the function's
# runtime (another Python, another boto3) and must not reach this one. The bundle's libraries
# come first on LD_LIBRARY_PATH: Lambda's python3.13 runtime puts its own libpython3.13 in
# /var/lang/lib, first on the path, and this interpreter must load the one it was built with.
# Only builtins and exec here: the minimal image has bash but not necessarily coreutils.
set -euo pipefail
case "${BASH_SOURCE[0]}" in
  */*) here="${BASH_SOURCE[0]%/*}" ;;
  *) here=. ;; # started as `pgbouncer-extension` from its own folder
esac
root="$(cd "$here/.." && pwd)"
export LD_LIBRARY_PATH="$root/pooler-python/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$root/pooler-python/bin/python3" -I "$root/pooler-python/launch.py" "$@"
