"""Assembles the runtime image's root filesystem in the builder stage (see the Dockerfile).

    python3 image/rootfs.py DEST --venv /opt/venv [--trim GLOB ...]

Into DEST: the interpreter of the venv (the symbolic links leading to it and the binary), its
standard library less the TRIM globs (relative to the standard library), compiled; the shared
libraries the interpreter and every extension module left link (as `ldd` finds them), the
loader and its cache; CA certificates; /etc/passwd and /etc/group with the app's user; an
empty /tmp. The venv and the app are copied by the Dockerfile itself. Runs with the builder's
own python3, the interpreter it copies, so only the standard library is used.
"""

from __future__ import annotations

import argparse
import compileall
import fnmatch
import os
import shutil
import ssl
import subprocess
import sys
import sysconfig
from pathlib import Path

# Loaded by glibc with dlopen when a thread exits (pthread_exit), so `ldd` does not list it.
DLOPENED = ("libgcc_s.so.1",)
APP_USER = "app:x:10001:10001:app:/nonexistent:/sbin/nologin"
APP_GROUP = "app:x:10001:"


def copy_file(source: Path, dest_root: Path) -> None:
    """SOURCE's content (links followed) at SOURCE's own path under DEST_ROOT."""
    target = dest_root / source.relative_to("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source.resolve(), target)


def copy_link_chain(path: Path, dest_root: Path) -> None:
    """PATH and every symbolic link on the way to the file it names, as links, then the file."""
    while path.is_symlink():
        target = dest_root / path.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        link = os.readlink(path)
        if not target.is_symlink():
            target.symlink_to(link)
        path = path.parent / link
    copy_file(Path(os.path.normpath(path)), dest_root)


def trimmed(relative: str, globs: list[str]) -> bool:
    """True when RELATIVE (a path in the standard library) or a directory above it matches."""
    parts = Path(relative).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatch(prefix, glob) for prefix in prefixes for glob in globs)


def copy_stdlib(stdlib: Path, dest_root: Path, globs: list[str]) -> list[str]:
    """The standard library less what GLOBS match, compiled; returns what was left out."""
    left_out = []
    dest = dest_root / stdlib.relative_to("/")
    for directory, subdirs, files in os.walk(stdlib):
        base = Path(directory)
        kept = []
        for name in sorted([*subdirs, *files]):
            relative = str((base / name).relative_to(stdlib))
            if name == "__pycache__":
                continue  # compiled again below, for this interpreter and these paths
            if trimmed(relative, globs):
                left_out.append(relative)
            elif name in subdirs:
                kept.append(name)
            else:
                copy_file(base / name, dest_root)
        subdirs[:] = kept
    # Compiled now and named by their path in the image: the root is read-only at run time.
    if not compileall.compile_dir(
        dest, quiet=2, workers=0, stripdir=str(dest_root), prependdir="/"
    ):
        raise SystemExit("compiling the standard library failed")
    return left_out


def linked_libraries(binaries: list[Path]) -> set[Path]:
    """The shared libraries BINARIES link, and the loader, as `ldd` lists them."""
    found: set[Path] = set()
    for binary in binaries:
        listing = subprocess.run(
            ["ldd", str(binary)], capture_output=True, text=True, check=True
        ).stdout
        for line in listing.splitlines():
            if "not found" in line:
                raise SystemExit(f"{binary}: {line.strip()}")
            words = line.split()
            path = words[2] if len(words) > 2 and words[1] == "=>" else words[0]
            if path.startswith("/"):
                found.add(Path(path))
    return found


def dlopened_libraries(names: tuple[str, ...]) -> set[Path]:
    """Where the loader's cache (`ldconfig -p`) finds each of NAMES."""
    listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True)
    found: dict[str, Path] = {}
    for line in listing.stdout.splitlines():
        if " => " in line:  # the first entry for a name is the one the loader takes
            path = Path(line.split(" => ")[1])
            found.setdefault(path.name, path)
    missing = [name for name in names if name not in found]
    if missing:
        raise SystemExit(f"not in the loader's cache: {', '.join(missing)}")
    return {found[name] for name in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest", type=Path)
    parser.add_argument("--venv", type=Path, required=True)
    parser.add_argument("--trim", action="append", default=[], metavar="GLOB")
    args = parser.parse_args()
    dest: Path = args.dest

    interpreter = args.venv / "bin" / "python"
    copy_link_chain(Path(os.readlink(interpreter)), dest)
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    left_out = copy_stdlib(stdlib, dest, args.trim)

    extensions = [*(dest / stdlib.relative_to("/")).rglob("*.so"), *args.venv.rglob("*.so")]
    libraries = linked_libraries([Path(sys.executable).resolve(), *extensions])
    libraries |= dlopened_libraries(DLOPENED)
    for library in sorted(libraries):
        copy_file(library, dest)
    # The loader's cache, from the base's configuration: a libpython in /usr/local/lib (as an
    # official Python image has it) is then found as it was in the base.
    for conf in [Path("/etc/ld.so.conf"), *Path("/etc/ld.so.conf.d").glob("*.conf")]:
        if conf.is_file():
            copy_file(conf, dest)
    subprocess.run(["ldconfig", "-r", str(dest)], check=True)

    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    copy_file(bundle, dest)
    default = dest / Path(ssl.get_default_verify_paths().openssl_cafile).relative_to("/")
    default.parent.mkdir(parents=True, exist_ok=True)
    default.symlink_to(bundle)
    (dest / "etc").mkdir(exist_ok=True)
    (dest / "etc/passwd").write_text(f"root:x:0:0:root:/root:/sbin/nologin\n{APP_USER}\n")
    (dest / "etc/group").write_text(f"root:x:0:\n{APP_GROUP}\n")
    (dest / "tmp").mkdir(exist_ok=True)
    (dest / "tmp").chmod(0o1777)  # set after mkdir: its mode argument is masked by the umask

    print(f"left out of {stdlib}: {len(left_out)} paths; {len(libraries)} shared libraries")


if __name__ == "__main__":
    main()
