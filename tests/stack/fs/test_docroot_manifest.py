"""The docroot manifest reads only regular files inside the document root, never through a link."""

from __future__ import annotations

from pathlib import Path

from stack.fs.docroot_manifest import DOCROOT_SIZES, docroot_files, file_bytes


def _docroot(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "docroot"
    (root / "files").mkdir(parents=True)
    (root / "index.html").write_bytes(b"<h1>lab</h1>")
    (root / "files" / "note.txt").write_bytes(b"inside")
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"host secret")
    return root, outside


def test_a_symlink_to_a_file_outside_the_docroot_is_not_served(tmp_path):
    root, outside = _docroot(tmp_path)
    (root / "leak.txt").symlink_to(outside)
    files = docroot_files(root)
    assert "leak.txt" not in files
    assert all(file_bytes(content) != b"host secret" for path, content in files.items()
               if path not in DOCROOT_SIZES)
    assert file_bytes(files["index.html"]) == b"<h1>lab</h1>"
    assert file_bytes(files["files/note.txt"]) == b"inside"


def test_a_symlinked_folder_pointing_outside_is_not_walked(tmp_path):
    root, outside = _docroot(tmp_path)
    (root / "escape").symlink_to(outside.parent)
    files = docroot_files(root)
    assert not any(path.startswith("escape/") for path in files)


def test_a_symlink_to_a_file_inside_the_docroot_is_skipped_too(tmp_path):
    root, _ = _docroot(tmp_path)
    (root / "alias.html").symlink_to(root / "index.html")
    files = docroot_files(root)
    assert "alias.html" not in files and "index.html" in files
