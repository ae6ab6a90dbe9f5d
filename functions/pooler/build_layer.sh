#!/usr/bin/env bash
# Builds the pooler Lambda layer: PgBouncer from source for Amazon Linux 2023 arm64, its libevent,
# the poolbench extension that starts it in every execution environment, and the Python 3.13
# (with boto3) that runs the extension, so it runs under any function runtime (bundle_python.py).
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
# boto3 and botocore as this repository's lock file pins them (infra/pooler_layer.py passes them).
BOTO3_VERSION="${BOTO3_VERSION:?set BOTO3_VERSION}"
BOTOCORE_VERSION="${BOTOCORE_VERSION:?set BOTOCORE_VERSION}"
INPUT="${ASSET_INPUT:-/asset-input}"
OUTPUT="${ASSET_OUTPUT:-/asset-output}"

arch="$(uname -m)"
if [ "$arch" != "aarch64" ]; then
  echo "build_layer.sh: running on $arch; the layer must be built on arm64 (docker --platform linux/arm64)" >&2
  exit 1
fi

# openssl-devel: PgBouncer speaks TLS to Aurora (server_tls_sslmode=require).
# No c-ares: PgBouncer then resolves through libevent's evdns, one library fewer to ship.
# python3.13 (AL2023's, as the python3.13 runtime) with pip: the extension's own interpreter.
# glibc-common brings ldd, which bundle_python.py runs.
dnf install -y -q gcc make tar gzip libevent-devel openssl-devel pkgconf-pkg-config \
  python3.13 python3.13-pip glibc-common >/dev/null

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

"python3.13" "$INPUT/pooler/bundle_python.py" "$OUTPUT" \
  "boto3==${BOTO3_VERSION}" "botocore==${BOTOCORE_VERSION}"
bash "$INPUT/pooler/install_layer.sh" "$INPUT" "$OUTPUT" "$PWD/pgbouncer" /usr/lib64
rm -rf "$work"
