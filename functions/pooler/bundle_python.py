"""Copies the Python that runs this script, and boto3, into the pooler layer.

Why the layer brings its own interpreter: the extension is Python, but Lambda runs it with
whatever the function's runtime has. ``nodejs24.x`` is built on the minimal Amazon Linux 2023
image, which has no Python at all, and the ``python3.13`` runtime's Python (and its boto3) is
the runtime's, not ours. With its own interpreter the extension is the same code on the same
Python under every runtime and arm, as the comparison needs (one layer for all arms).

Usage, from build_layer.sh inside amazonlinux:2023 (linux/arm64) with AL2023's python3.13,
and from the tests with this machine's Python 3.13::

    python3.13 bundle_python.py OUTPUT_DIR REQUIREMENT...

It lays out ``OUTPUT_DIR/pooler-python/`` (``/opt/pooler-python`` on Lambda):

- ``bin/python3``: the interpreter. Python looks for its standard library above its own
  executable, so the copy needs no PYTHONHOME;
- ``lib/``: every shared library the interpreter and its extension modules load (libpython,
  OpenSSL for ``ssl``, ...), glibc's own excepted, which must be the system's;
- ``<platlibdir>/python3.X/``: the standard library, without tests, GUI and database modules;
- ``packages/``: the requirements (boto3), with botocore's models cut to Secrets Manager.

All of it is byte-compiled here, because /opt is read-only on Lambda: without .pyc files every
cold start would compile boto3 again. Last, the copy is run on its own (its libraries only,
isolated from this Python) and must find its prefix, ``ssl`` and boto3 inside the folder: a
copy that silently used the build machine's /usr would pass here and fail on Lambda.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
import sys
import sysconfig
from collections.abc import Iterable
from pathlib import Path

BUNDLE_DIR = "pooler-python"
STDLIB_DROP = (
    "test",
    "idlelib",
    "tkinter",
    "turtledemo",
    "turtle.py",
    "ensurepip",
    "lib2to3",
    "pydoc_data",
    "site-packages",
    "dist-packages",
    "config-*",
    "__pycache__",
    "*.exe",
)
"""Names (at any depth) of the standard library no extension needs (tests alone are ~30 MB)."""
EXTENSION_MODULE_DROP = (
    "_test*",
    "_ctypes_test*",
    "_xxtestfuzz*",
    "xxlimited*",
    "xxsubtype*",
    "_tkinter*",
    "readline*",
    "_curses*",
    "_dbm*",
    "_gdbm*",
    "_sqlite3*",
    "nis*",
    "_crypt*",
    "spwd*",
    "ossaudiodev*",
)
"""Compiled modules left out, so their libraries (Tk, ncurses, gdbm, SQLite, NIS's Kerberos
and RPC, libcrypt) are not shipped."""
GLIBC = re.compile(
    r"^(ld-linux.*|linux-vdso.*|libc|libm|libmvec|libpthread|libdl|librt|libutil|libresolv|"
    r"libanl|libnsl|libBrokenLocale|libnss_.*|libgcc_s)\.so"
)
"""glibc's own libraries (and gcc's runtime): every Linux has them, and a copy of another
glibc's would not load with the system's loader."""
BOTOCORE_SERVICES = ("secretsmanager",)
"""The one AWS API the extension calls; botocore's other models (~28 MB) are dropped."""


def copy_interpreter(dest: Path) -> Path:
    """The executable as dest/bin/python3, a file of its own: no symbolic link, so nothing
    depends on how the layer's zip stores links."""
    binary = dest / "bin" / "python3"
    binary.parent.mkdir(parents=True)
    shutil.copy2(Path(sys.executable).resolve(), binary)
    return binary


def copy_stdlib(dest: Path) -> list[Path]:
    """The standard library at the same path relative to the prefix as here, so the copy's own
    search (``<platlibdir>/python3.X/os.py`` above its executable) finds it. Returns the
    folders copied (stdlib, and platstdlib where a distribution splits them)."""
    copied: list[Path] = []
    for key, prefix in (("stdlib", sys.base_prefix), ("platstdlib", sys.base_exec_prefix)):
        source = Path(sysconfig.get_path(key))
        target = dest / source.relative_to(prefix)
        if target in copied:
            continue
        shutil.copytree(source, target, ignore=shutil.ignore_patterns(*STDLIB_DROP), symlinks=False)
        dynload = target / "lib-dynload"
        if dynload.is_dir():
            for module in list(dynload.iterdir()):
                if any(fnmatch.fnmatch(module.name, p) for p in EXTENSION_MODULE_DROP):
                    module.unlink()
        copied.append(target)
    return copied


def install_packages(dest: Path, requirements: list[str]) -> Path:
    """The requirements into dest/packages with this Python's pip, wheels only."""
    target = dest / "packages"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--root-user-action=ignore",
            "--no-compile",
            "--only-binary=:all:",
            "--target",
            str(target),
            *requirements,
        ],
        check=True,
    )
    shutil.rmtree(target / "bin", ignore_errors=True)  # console scripts pointing at this Python
    botocore_data = target / "botocore" / "data"
    if botocore_data.is_dir():
        for entry in botocore_data.iterdir():
            if entry.is_dir() and entry.name not in BOTOCORE_SERVICES:
                shutil.rmtree(entry)
    shutil.rmtree(target / "boto3" / "data", ignore_errors=True)  # resource models only
    return target


def needed_libraries(elf_files: Iterable[Path]) -> dict[str, Path]:
    """soname -> file for every non-glibc library the files load (``ldd`` lists the whole
    closure). A library ``ldd`` cannot find stops the build: it would not load on Lambda."""
    found: dict[str, Path] = {}
    for elf in elf_files:
        listing = subprocess.run(
            ["ldd", str(elf)], capture_output=True, text=True, check=False
        ).stdout
        for line in listing.splitlines():
            name, _, where = line.strip().partition(" => ")
            if not where or GLIBC.match(name):
                continue
            if where.startswith("not found"):
                raise SystemExit(f"bundle_python.py: {elf.name} needs {name}, which is not found")
            path = where.split(" (", 1)[0].strip()
            if path:
                found.setdefault(name, Path(path))
    return found


def copy_libraries(dest: Path, binary: Path, stdlib_dirs: list[Path]) -> list[str]:
    """Into dest/lib, under their sonames (the name the loader asks for)."""
    lib = dest / "lib"
    lib.mkdir(exist_ok=True)  # where a prefix keeps libpython, beside lib/python3.X
    modules = [p for d in stdlib_dirs for p in (d / "lib-dynload").glob("*.so")]
    libraries = needed_libraries([binary, *modules])
    for soname, path in sorted(libraries.items()):
        shutil.copy2(path.resolve(), lib / soname)
    return sorted(libraries)


def compile_all(binary: Path, dest: Path, env: dict[str, str]) -> None:
    """.pyc files for everything, made by the copy itself (the proof it runs, too)."""
    subprocess.run(
        [str(binary), "-I", "-m", "compileall", "-q", "-j", "0", str(dest)],
        env=env,
        check=True,
    )


def check_self_contained(binary: Path, dest: Path, env: dict[str, str]) -> dict[str, str]:
    """Runs the copy alone and returns where its prefix, ssl, boto3 and libpython (when it has
    one) came from; each must be inside dest. Secrets Manager's client is built, so the cut
    models still serve it."""
    probe = (
        "import json, ssl, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "import boto3\n"
        "boto3.client('secretsmanager', region_name='us-east-1')\n"
        "maps = {line.split()[-1] for line in open('/proc/self/maps') if '.so' in line}\n"
        "libpython = sorted(m for m in maps if '/libpython' in m)\n"
        "print(json.dumps({'prefix': sys.prefix, 'ssl': ssl.__file__, 'boto3': boto3.__file__,"
        " 'libpython': libpython[0] if libpython else sys.prefix,"
        " 'version': sys.version.split()[0]}))\n"
    )
    out = subprocess.run(
        [str(binary), "-I", "-c", probe, str(dest / "packages")],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"bundle_python.py: the bundled Python does not run: {out.stderr}")
    where: dict[str, str] = json.loads(out.stdout)
    root = str(dest.resolve())
    outside = {k: v for k, v in where.items() if k != "version" and not v.startswith(root)}
    if outside:
        raise SystemExit(f"bundle_python.py: the bundled Python uses files outside it: {outside}")
    return where


def bundle(output: Path, requirements: list[str]) -> dict[str, str]:
    if sys.prefix != sys.base_prefix:
        raise SystemExit("bundle_python.py: run it with the interpreter itself, not a venv's")
    dest = output / BUNDLE_DIR
    if dest.exists():
        shutil.rmtree(dest)
    binary = copy_interpreter(dest)
    stdlib_dirs = copy_stdlib(dest)
    install_packages(dest, requirements)
    libraries = copy_libraries(dest, binary, stdlib_dirs)
    # As Lambda runs it: no PATH to another Python, only the bundle's own libraries.
    env = {"PATH": "/usr/bin:/bin", "LD_LIBRARY_PATH": str(dest / "lib")}
    compile_all(binary, dest, env)
    where = check_self_contained(binary, dest, env)
    return {**where, "libraries": " ".join(libraries)}


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: bundle_python.py OUTPUT_DIR REQUIREMENT...", file=sys.stderr)
        return 2
    where = bundle(Path(argv[0]).resolve(), argv[1:])
    print(f"bundle_python.py: Python {where['version']}, libraries: {where['libraries']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
