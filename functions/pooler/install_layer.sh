#!/usr/bin/env bash
# Puts the pooler layer's files in place: PgBouncer, its libevent, the extension, the contract
# module it imports and the launcher that runs it on the layer's own Python, which
# bundle_python.py has put in OUTPUT_DIR/pooler-python before. The last step of build_layer.sh, and a script of its own so the
# tests can run it (with the host's PgBouncer) and check the very layout that ships.
#
# Usage: install_layer.sh FUNCTIONS_DIR OUTPUT_DIR PGBOUNCER_BINARY LIBEVENT_DIR
#   FUNCTIONS_DIR: the repository's functions/ folder (CDK's /asset-input)
#   OUTPUT_DIR:    the layer's root, /opt on Lambda (CDK's /asset-output)
set -euo pipefail

if [ "$#" -ne 4 ]; then
  echo "usage: install_layer.sh FUNCTIONS_DIR OUTPUT_DIR PGBOUNCER_BINARY LIBEVENT_DIR" >&2
  exit 2
fi
INPUT="$1"
OUTPUT="$2"
PGBOUNCER="$3"
LIBEVENT_DIR="$4"
PYTHON="$OUTPUT/pooler-python/bin/python3"
if [ ! -x "$PYTHON" ]; then
  echo "install_layer.sh: no bundled Python at $PYTHON: run bundle_python.py OUTPUT_DIR first" >&2
  exit 1
fi

mkdir -p "$OUTPUT/bin" "$OUTPUT/lib" "$OUTPUT/extensions" "$OUTPUT/functions"
install -m 0755 "$PGBOUNCER" "$OUTPUT/bin/pgbouncer"
# Lambda puts /opt/lib on LD_LIBRARY_PATH; only libevent is missing from the runtime.
for lib in libevent libevent_core libevent_extra libevent_openssl libevent_pthreads; do
  cp -a "$LIBEVENT_DIR/$lib"-2.1.so* "$OUTPUT/lib/" 2>/dev/null || true
done
if ! ls "$OUTPUT/lib/libevent-2.1.so"* >/dev/null 2>&1; then
  echo "install_layer.sh: no libevent-2.1.so* in $LIBEVENT_DIR" >&2
  exit 1
fi

# The extension: Lambda runs every executable in /opt/extensions; its file name is its name.
# That one is a bash launcher starting the Python launcher with the layer's own interpreter.
install -m 0755 "$INPUT/pooler/layer_launcher.sh" "$OUTPUT/extensions/pgbouncer-extension"
install -m 0644 "$INPUT/pooler/extensions/pgbouncer-extension" "$OUTPUT/pooler-python/launch.py"
install -m 0644 "$INPUT/pooler/pgbouncer_extension.py" "$OUTPUT/pgbouncer_extension.py"
# The contract it imports (arm names, env var names, pooler defaults): /opt/functions/contract.py.
install -m 0644 "$INPUT/__init__.py" "$OUTPUT/functions/__init__.py"
install -m 0644 "$INPUT/contract.py" "$OUTPUT/functions/contract.py"

# Byte-compiled by the interpreter that runs them: /opt is read-only on Lambda, so a .pyc not
# made here would be compiled again at every cold start.
LD_LIBRARY_PATH="$OUTPUT/pooler-python/lib" "$PYTHON" -I -m compileall -q \
  "$OUTPUT/pgbouncer_extension.py" "$OUTPUT/functions"

# Fail the build, not the first cold start, if the binary cannot load its libraries.
LD_LIBRARY_PATH="$OUTPUT/lib" "$OUTPUT/bin/pgbouncer" --version
