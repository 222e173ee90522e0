"""The runtime stage's trimmed standard library: one list in the Dockerfile, a reason per entry,
applied by image/rootfs.py as the tests here expect (the built image is checked by
`make image-test`)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from image.rootfs import DLOPENED, copy_link_chain, copy_stdlib, dlopened_libraries, trimmed
from tests.dockerfile import DOCKERFILE, trim_groups, trim_list


def test_every_trimmed_entry_has_a_reason_and_appears_once() -> None:
    groups = trim_groups()
    assert len(groups) >= 5
    for reason, globs in groups:
        assert len(reason.split()) >= 3, f"no reason given for {globs}"
    repeated = [glob for glob, count in Counter(trim_list()).items() if count > 1]
    assert repeated == []


def test_the_list_is_in_one_place() -> None:
    text = DOCKERFILE.read_text()
    assert text.count("rootfs.py /rootfs") == 1
    assert len(trim_list()) == text.count("--trim ")


def test_a_group_without_a_comment_above_has_no_reason() -> None:
    text = "RUN python3 image/rootfs.py /rootfs \\\n    --trim 'a' \\\n# why b\n    --trim 'b'\n"
    assert trim_groups(text) == [("", ["a"]), ("why b", ["b"])]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("test", True),
        ("test/support/__init__.py", True),
        ("unittest/__init__.py", False),
        ("ctypes/test/test_bytes.py", True),
        ("lib-dynload/_testcapi.cpython-311-x86_64-linux-gnu.so", True),
        ("lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so", False),
        ("sqlite3/dbapi2.py", True),
        ("dbm/gnu.py", True),
        ("dbm/dumb.py", False),
        ("turtle.py", True),
        ("os.py", False),
    ],
)
def test_the_dockerfiles_globs_match_directories_and_what_is_in_them(
    path: str, expected: bool
) -> None:
    assert trimmed(path, trim_list()) is expected


def test_the_standard_library_is_copied_less_the_trimmed_and_compiled(tmp_path: Path) -> None:
    stdlib = tmp_path / "usr/lib/python3.11"
    for name in ("os.py", "test/support.py", "json/__init__.py", "lib-dynload/_testcapi.so"):
        (stdlib / name).parent.mkdir(parents=True, exist_ok=True)
        (stdlib / name).write_text("VALUE = 1\n")
    dest = tmp_path / "rootfs"
    left_out = copy_stdlib(stdlib, dest, ["test", "lib-dynload/_test*"])
    copied = dest / stdlib.relative_to("/")
    assert sorted(left_out) == ["lib-dynload/_testcapi.so", "test"]
    assert (copied / "os.py").read_text() == "VALUE = 1\n"
    assert (copied / "json/__init__.py").exists()
    assert not (copied / "test").exists()
    assert not (copied / "lib-dynload/_testcapi.so").exists()
    [compiled] = (copied / "__pycache__").glob("os.cpython-*.pyc")
    # Named by its path in the image, not in the builder's staging directory.
    assert str(stdlib / "os.py").encode() in compiled.read_bytes()
    assert str(dest).encode() not in compiled.read_bytes()


def test_the_interpreters_links_are_kept_as_links(tmp_path: Path) -> None:
    binary = tmp_path / "usr/bin/python3.11"
    binary.parent.mkdir(parents=True)
    binary.write_text("binary")
    (tmp_path / "usr/bin/python3").symlink_to("python3.11")
    dest = tmp_path / "rootfs"
    copy_link_chain(tmp_path / "usr/bin/python3", dest)
    inside = dest / tmp_path.relative_to("/") / "usr/bin"
    assert (inside / "python3").is_symlink()
    assert (inside / "python3").readlink() == Path("python3.11")
    assert (inside / "python3.11").read_text() == "binary"


def test_the_dlopened_libraries_are_found_and_a_missing_one_is_named() -> None:
    [libgcc] = dlopened_libraries(DLOPENED)
    assert libgcc.name == "libgcc_s.so.1"
    assert libgcc.is_file()
    with pytest.raises(SystemExit, match=r"cache: libnothing\.so\.7"):
        dlopened_libraries((*DLOPENED, "libnothing.so.7"))
