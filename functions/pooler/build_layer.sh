#!/usr/bin/env bash
# Builds the pooler Lambda layer: PgBouncer from source for Amazon Linux 2023 arm64, its libevent,
# and the poolbench extension that starts it in every execution environment.
#
# Why from source: Amazon Linux 2023 has no PgBouncer package, and the Lambda python3.13 runtime
# is Amazon Linux 2023, so a binary built there links against the same glibc and OpenSSL 3 that
# the runtime ships. Only libevent is missing from the runtime, so it is copied into lib/ (Lambda
# puts /opt/lib on LD_LIBRARY_PATH).
#
# Runs inside amazonlinux:2023 (linux/arm64) as CDK Docker bundling does it:
#   /asset-input  = functions/ (read only)      /asset-output = the layer's root (/opt)
# The layer's files are put in place by install_layer.sh, which the tests run on their own.
# By hand, from the repository root (needs Docker; on x86 hosts also QEMU binfmt for arm64):
#   docker run --rm --platform linux/arm64 -v "$PWD/functions:/asset-input:ro" \
#     -v "$PWD/build/layer:/asset-output" public.ecr.aws/amazonlinux/amazonlinux:2023 \
#     bash /asset-input/pooler/build_layer.sh
set -euo pipefail

PGBOUNCER_VERSION="${PGBOUNCER_VERSION:-1.25.1}"
# sha256 of pgbouncer-1.25.1.tar.gz as published by pgbouncer.org (also pinned by Homebrew).
PGBOUNCER_SHA256="${PGBOUNCER_SHA256:-6e566ae92fe3ef7f6a1b9e26d6049f7d7ca39c40e29e7b38f6d5500ae15d8465}"
INPUT="${ASSET_INPUT:-/asset-input}"
OUTPUT="${ASSET_OUTPUT:-/asset-output}"

arch="$(uname -m)"
if [ "$arch" != "aarch64" ]; then
  echo "build_layer.sh: running on $arch; the layer must be built on arm64 (docker --platform linux/arm64)" >&2
  exit 1
fi

# openssl-devel: PgBouncer speaks TLS to Aurora (server_tls_sslmode=require).
# No c-ares: PgBouncer then resolves through libevent's evdns, one library fewer to ship.
dnf install -y -q gcc make tar gzip libevent-devel openssl-devel pkgconf-pkg-config >/dev/null

work="$(mktemp -d)"
cd "$work"
curl -fsSL -o pgbouncer.tar.gz \
  "https://www.pgbouncer.org/downloads/files/${PGBOUNCER_VERSION}/pgbouncer-${PGBOUNCER_VERSION}.tar.gz"
echo "${PGBOUNCER_SHA256}  pgbouncer.tar.gz" | sha256sum -c -
tar -xzf pgbouncer.tar.gz
cd "pgbouncer-${PGBOUNCER_VERSION}"
# The release tarball ships generated man pages, so unlike a git checkout no pandoc is needed.
./configure --prefix=/opt --with-openssl --without-cares --without-systemd >/dev/null
make -j"$(nproc)" >/dev/null

bash "$INPUT/pooler/install_layer.sh" "$INPUT" "$OUTPUT" "$PWD/pgbouncer" /usr/lib64
rm -rf "$work"
