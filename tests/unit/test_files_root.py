"""Root: paths looked up below a root as the kernel would if that root were `/`."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from exporter.collectors.fileread import MAX_SYMLINKS, Root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A host's tree: a venv whose python leads, by an absolute link, to /usr/bin."""
    root = tmp_path / "host"
    (root / "usr/bin").mkdir(parents=True)
    (root / "usr/bin/python3.11").write_text("#!/bin/sh\n")
    bin_dir = root / "opt/alphaengine/venv/bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python3").symlink_to("/usr/bin/python3.11")
    (bin_dir / "python").symlink_to("python3")
    (root / "srv/backups").mkdir(parents=True)
    (root / "opt/alphaengine/backups").symlink_to("/srv/backups")
    (root / "opt/alphaengine/up").symlink_to("../../..")
    (root / "loop").symlink_to("loop")
    (root / "file").write_text("x")
    return root


def real(root: Path, path: str, follow: bool = True) -> str:
    return Root(str(root)).lookup(path, follow)[0]


def test_absolute_symlinks_stay_inside_the_root(tree: Path) -> None:
    assert real(tree, "/opt/alphaengine/venv/bin/python") == f"{tree}/usr/bin/python3.11"
    assert real(tree, "/opt/alphaengine/backups/") == f"{tree}/srv/backups"
    # `..` never climbs out of the root, through a link or written out.
    assert real(tree, "/opt/alphaengine/up/usr/bin") == f"{tree}/usr/bin"
    assert real(tree, "/../../usr/./bin") == f"{tree}/usr/bin"


def test_without_follow_the_last_symlink_is_itself(tree: Path) -> None:
    path, st = Root(str(tree)).lookup("/opt/alphaengine/venv/bin/python", follow=False)
    assert path == f"{tree}/opt/alphaengine/venv/bin/python"
    assert os.readlink(path) == "python3"
    assert st == os.lstat(path)
    # A symlink in the middle is always followed.
    path, _ = Root(str(tree)).lookup("/opt/alphaengine/backups", follow=False)
    assert path == f"{tree}/opt/alphaengine/backups"
    # A trailing slash asks for the directory, as it does of the kernel.
    for name in ("/opt/alphaengine/backups/", "/opt/alphaengine/backups/."):
        path, _ = Root(str(tree)).lookup(name, follow=False)
        assert path == f"{tree}/srv/backups"


def test_root_slash_gives_the_kernels_answers(tree: Path) -> None:
    # Relative links only, so that the kernel and Root("/") must agree.
    inside = tree / "opt/alphaengine/venv/bin"
    (inside / "rel").symlink_to("../../../../usr/bin/python3.11")
    for path in (inside / "rel", tree / "opt/alphaengine/up", tree / "usr/bin/../bin/python3.11"):
        found, st = Root("/").lookup(str(path), follow=True)
        assert found == os.path.realpath(path)
        assert st == os.stat(path)


@pytest.mark.parametrize(
    ("path", "code"),
    [
        ("/nope/python", errno.ENOENT),
        ("/file/below", errno.ENOTDIR),
        ("/file/..", errno.ENOTDIR),
        ("/loop", errno.ELOOP),
        ("/loop/x", errno.ELOOP),
        ("/file/", errno.ENOTDIR),
    ],
)
def test_errors_are_the_kernels(tree: Path, path: str, code: int) -> None:
    with pytest.raises(OSError) as raised:
        Root(str(tree)).lookup(path, follow=True)
    assert raised.value.errno == code
    with pytest.raises(OSError) as kernel:
        os.stat(f"{tree}{path}")
    assert kernel.value.errno == code


def test_a_loop_without_follow_is_the_link_itself(tree: Path) -> None:
    path, _ = Root(str(tree)).lookup("/loop", follow=False)
    assert path == f"{tree}/loop"


def test_a_long_chain_is_a_loop(tree: Path) -> None:
    for i in range(MAX_SYMLINKS + 1):
        (tree / f"link{i}").symlink_to(f"link{i + 1}")
    (tree / f"link{MAX_SYMLINKS + 1}").write_text("end")
    with pytest.raises(OSError) as raised:
        Root(str(tree)).lookup("/link0", follow=True)
    assert raised.value.errno == errno.ELOOP
    assert real(tree, "/link1") == f"{tree}/link{MAX_SYMLINKS + 1}"


def test_expand_matches_like_glob(tree: Path) -> None:
    backups = tree / "srv/backups"
    for name in ("2026-11-01.tar.gz", "2026-11-02.tar.gz", ".partial.tar.gz", "notes.txt"):
        (backups / name).write_text(name)
    (backups / "nested").mkdir()
    (backups / "nested/2026-10-01.tar.gz").write_text("x")
    root = Root(str(tree))
    # Through the absolute symlink opt/alphaengine/backups -> /srv/backups, in the root.
    assert root.expand("/opt/alphaengine/backups/*.tar.gz") == [
        "/opt/alphaengine/backups/2026-11-01.tar.gz",
        "/opt/alphaengine/backups/2026-11-02.tar.gz",
    ]
    assert root.expand("/opt/alphaengine/backups/.*.tar.gz") == [
        "/opt/alphaengine/backups/.partial.tar.gz"
    ]
    assert root.expand("/srv/*/nested/*.tar.gz") == ["/srv/backups/nested/2026-10-01.tar.gz"]
    assert root.expand("/srv/backups/2026-11-0[2-9].tar.gz") == ["/srv/backups/2026-11-02.tar.gz"]
    assert root.expand("/nowhere/*.tar.gz") == []
    assert root.expand("/file/*") == []
    assert root.expand("/srv/backups/exact.tar.gz") == ["/srv/backups/exact.tar.gz"]
