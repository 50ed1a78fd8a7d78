"""khttpd request-target resolution and the lab's document root manifest."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stack.drivers.khttpd.paths import (
    MAX_TARGET_LENGTH,
    HttpError,
    ResolvedPath,
    normalize_request_target,
    resolve_request_target,
)
from stack.fs.docroot_manifest import (
    DOCROOT_SIZES,
    DYNAMIC_SAMPLE_PATH,
    MAX_SHIPPED_FILE_SIZE,
    DocrootError,
    docroot_files,
    docroot_sizes,
    file_bytes,
    synthesize_file,
)

MANIFEST = docroot_files()


def resolve(target: bytes, **kwargs: object) -> ResolvedPath | HttpError:
    return resolve_request_target(target, MANIFEST, **kwargs)  # type: ignore[arg-type]


def status_of(result: ResolvedPath | HttpError) -> int:
    return result.status if isinstance(result, HttpError) else 200


# ------------------------------------------------------------ normal paths


@pytest.mark.parametrize(
    ("target", "fs_path"),
    [
        (b"/", "index.html"),
        (b"/index.html", "index.html"),
        (b"/about.txt", "about.txt"),
        (b"/files/", "files/index.html"),
        (b"/files/.", "files/index.html"),
        (b"/files/..", "index.html"),
        (b"/files/../about.txt", "about.txt"),
        (b"//about.txt", "about.txt"),
        (b"/./files//4KB.bin", "files/4KB.bin"),
        (b"/files/%36%34B.bin", "files/64B.bin"),
        (b"/%2e/about.txt", "about.txt"),
        (b"/files/%2e%2e/about.txt", "about.txt"),
    ],
)
def test_target_resolves_to_normalized_docroot_path(target: bytes, fs_path: str) -> None:
    result = resolve(target)
    assert isinstance(result, ResolvedPath)
    assert result.fs_path == fs_path
    assert result.url_path == "/" + fs_path


def test_query_string_is_split_off_and_kept_raw() -> None:
    result = resolve(b"/about.txt?a=1&b=%2e%2e")
    assert result == ResolvedPath("about.txt", "/about.txt", b"a=1&b=%2e%2e")


def test_missing_file_is_404() -> None:
    result = resolve(b"/nope.html")
    assert isinstance(result, HttpError) and result.status == 404


def test_lookup_may_be_a_callable() -> None:
    seen: list[str] = []

    def exists(path: str) -> bool:
        seen.append(path)
        return path == "docs/a.txt"

    assert isinstance(resolve_request_target(b"/docs/a.txt", exists), ResolvedPath)
    assert status_of(resolve_request_target(b"/docs/b.txt", exists)) == 404
    assert seen == ["docs/a.txt", "docs/b.txt"]


def test_utf8_names_decode_once() -> None:
    result = resolve_request_target(b"/caf%C3%A9.txt", {"café.txt": b""})
    assert isinstance(result, ResolvedPath) and result.fs_path == "café.txt"


# ---------------------------------------------------------- hostile paths


@pytest.mark.parametrize(
    "target",
    [
        b"/..",
        b"/../etc/passwd",
        b"/files/../../about.txt",
        b"/%2e%2e/about.txt",
        b"/%2E%2E/about.txt",
        b"/.%2e/about.txt",
        b"/files/%2e%2e/%2e%2e/about.txt",
    ],
)
def test_climbing_above_root_is_400(target: bytes) -> None:
    assert status_of(resolve(target)) == 400


@pytest.mark.parametrize(
    "target",
    [
        b"/files%2f..%2fabout.txt",  # encoded slash
        b"/files%2F64B.bin",
        b"/a\\..\\about.txt",  # raw backslash
        b"/%5c..%5cabout.txt",  # encoded backslash
        b"/about.txt%00.html",  # NUL
        b"/about%0d%0a.txt",  # CR LF (header injection)
        b"/%7f",
        b"/%c0%ae%c0%ae/about.txt",  # overlong UTF-8 dot
        b"/%ff.txt",  # not UTF-8
        b"/%252e%252e/about.txt",  # double encoding
        b"/%25%32%65",  # double encoding built from escapes
        b"/%zz",
        b"/%2",
        b"/abc%",
        b"/a b",
        b"/caf\xc3\xa9",  # raw non-ASCII bytes
        b"/about.txt#top",
        b"*",
        b"example.com:443",
        b"about.txt",
        b"",
    ],
)
def test_hostile_or_malformed_target_is_400(target: bytes) -> None:
    assert status_of(resolve(target)) == 400


def test_percent_sign_that_is_not_an_escape_after_decoding_is_allowed() -> None:
    result = resolve_request_target(b"/100%25", {"100%": b""})
    assert isinstance(result, ResolvedPath) and result.fs_path == "100%"


def test_target_over_8_kib_is_414_and_exactly_8_kib_is_not() -> None:
    at_limit = b"/" + b"a" * (MAX_TARGET_LENGTH - 1)
    assert status_of(resolve(at_limit)) == 404
    assert status_of(resolve(at_limit + b"a")) == 414


# ----------------------------------------------------------- absolute-form


@pytest.mark.parametrize(
    "target",
    [
        b"http://10.0.0.1/about.txt",
        b"HTTP://10.0.0.1/about.txt",
        b"http://10.0.0.1:80/about.txt",
        b"http://WWW.LAB/about.txt",
    ],
)
def test_absolute_form_for_our_host_is_accepted(target: bytes) -> None:
    result = resolve(target, server_names={"10.0.0.1", "www.lab"})
    assert isinstance(result, ResolvedPath) and result.fs_path == "about.txt"


def test_absolute_form_without_path_means_root() -> None:
    result = resolve(b"http://10.0.0.1?x", server_names={"10.0.0.1"})
    assert result == ResolvedPath("index.html", "/index.html", b"x")


def test_absolute_form_ipv6_literal_host() -> None:
    result = resolve(b"http://[fd00::1]:8080/about.txt", server_names={"[fd00::1]"})
    assert isinstance(result, ResolvedPath)


@pytest.mark.parametrize(
    "target",
    [
        b"http://evil.example/about.txt",
        b"https://10.0.0.1/about.txt",
        b"ftp://10.0.0.1/about.txt",
        b"http://user@10.0.0.1/about.txt",
        b"http://10.0.0.1:http/about.txt",
        b"http:///about.txt",
        b"http://[fd00::1/about.txt",
        b"http://10.0.0.1/../about.txt",
    ],
)
def test_absolute_form_for_another_host_or_scheme_is_400(target: bytes) -> None:
    assert status_of(resolve(target, server_names={"10.0.0.1"})) == 400


def test_absolute_form_accepts_any_host_when_no_names_configured() -> None:
    assert isinstance(resolve(b"http://anything/about.txt"), ResolvedPath)


def test_non_bytes_target_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        normalize_request_target("/index.html")  # type: ignore[arg-type]


# ------------------------------------------------------ traversal property

_FRAGMENTS = [
    b"/", b"//", b".", b"..", b"%2e", b"%2E", b"%2e%2e", b"%2f", b"%2F", b"\\",
    b"%5c", b"%5C", b"%00", b"%c0%ae", b"%c0%af", b"%25", b"%252e", b"%", b"?",
    b"#", b"files", b"about.txt", b"index.html", b"64B.bin", b"a", b"\x00",
    b"\xff", b"http://10.0.0.1", b"%e2%80%ae",
]  # fmt: skip

hostile_targets = st.one_of(
    st.lists(st.sampled_from(_FRAGMENTS), max_size=24).map(b"".join),
    st.lists(st.sampled_from(_FRAGMENTS), max_size=24).map(lambda parts: b"/" + b"".join(parts)),
    st.binary(max_size=64),
)


def _assert_inside_root(result: ResolvedPath) -> None:
    segments = result.fs_path.split("/")
    assert not result.fs_path.startswith("/")
    assert all(segment not in ("", ".", "..") for segment in segments)
    assert "\\" not in result.fs_path and "\x00" not in result.fs_path
    assert all(ord(ch) >= 0x20 for ch in result.fs_path)
    assert result.url_path == "/" + result.fs_path


@settings(max_examples=600, deadline=None)
@given(hostile_targets)
def test_property_traversal_attempts_end_in_error_or_a_manifest_file(target: bytes) -> None:
    result = resolve(target, server_names={"10.0.0.1"})
    if isinstance(result, HttpError):
        assert result.status in (400, 404, 414)
    else:
        assert result.fs_path in MANIFEST
        _assert_inside_root(result)


@settings(max_examples=600, deadline=None)
@given(hostile_targets)
def test_property_normalized_paths_never_leave_the_root(target: bytes) -> None:
    result = normalize_request_target(target)
    if isinstance(result, ResolvedPath):
        _assert_inside_root(result)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([b"a", b"b", b".", b"..", b""]), max_size=12))
def test_property_dot_segments_match_a_stack_model(segments: list[bytes]) -> None:
    result = normalize_request_target(b"/" + b"/".join(segments))
    depth_model: list[bytes] = []
    escaped = False
    for segment in segments:
        if segment == b"..":
            if not depth_model:
                escaped = True
                break
            depth_model.pop()
        elif segment not in (b"", b"."):
            depth_model.append(segment)
    if escaped:
        assert isinstance(result, HttpError) and result.status == 400
    else:
        assert isinstance(result, ResolvedPath)
        assert result.fs_path.split("/")[: len(depth_model)] == [s.decode() for s in depth_model]


# ------------------------------------------------------- docroot manifest


def test_docroot_has_the_lab_files_with_their_sizes() -> None:
    sizes = docroot_sizes()
    assert {"index.html", "about.txt", "style.css", "files/index.html"} <= set(sizes)
    assert {path: sizes[path] for path in DOCROOT_SIZES} == {
        "files/64B.bin": 64,
        "files/1KB.bin": 1024,
        "files/4KB.bin": 4096,
        "files/16KB.bin": 16384,
        "files/64KB.bin": 65536,
        "files/256KB.bin": 262144,
        "files/1MB.bin": 1048576,
    }


def test_docroot_synthesized_files_have_declared_length() -> None:
    for path, size in DOCROOT_SIZES.items():
        assert len(file_bytes(MANIFEST[path])) == size


def test_docroot_bytes_are_deterministic_across_calls_and_manifests() -> None:
    again = docroot_files()
    assert list(again) == list(MANIFEST)
    for path in MANIFEST:
        assert file_bytes(MANIFEST[path]) == file_bytes(again[path])
    assert synthesize_file("files/1KB.bin", 1024) == synthesize_file("files/1KB.bin", 1024)


def test_synthesized_stream_is_a_prefix_stable_sha256_counter_stream() -> None:
    # Files differ by name, and a shorter file is a prefix of a longer stream.
    assert synthesize_file("files/64B.bin", 64) != synthesize_file("files/1KB.bin", 64)
    assert synthesize_file("x", 100) == synthesize_file("x", 1000)[:100]
    assert synthesize_file("x", 0) == b""
    # Not a short repeating pattern: every 32-byte block is distinct.
    data = synthesize_file("files/4KB.bin", 4096)
    blocks = {data[i : i + 32] for i in range(0, 4096, 32)}
    assert len(blocks) == 128


def test_synthesize_rejects_negative_size() -> None:
    with pytest.raises(ValueError):
        synthesize_file("x", -1)


def test_shipped_docroot_files_are_small_text() -> None:
    for path, content in MANIFEST.items():
        if isinstance(content, bytes):
            assert len(content) <= MAX_SHIPPED_FILE_SIZE
            content.decode("utf-8")


def test_index_page_links_every_file_and_the_dynamic_sample() -> None:
    index = file_bytes(MANIFEST["index.html"]).decode()
    for path in ["about.txt", "style.css", *DOCROOT_SIZES]:
        assert f'href="/{path}"' in index
    assert f'href="{DYNAMIC_SAMPLE_PATH}"' in index


def test_every_docroot_file_resolves_from_its_url() -> None:
    for path in MANIFEST:
        result = resolve(("/" + path).encode())
        assert isinstance(result, ResolvedPath) and result.fs_path == path


def test_docroot_missing_folder_is_a_typed_error(tmp_path) -> None:
    with pytest.raises(DocrootError):
        docroot_files(tmp_path / "missing")


def test_docroot_rejects_big_shipped_files_and_name_clashes(tmp_path) -> None:
    (tmp_path / "big.bin").write_bytes(b"\0" * (MAX_SHIPPED_FILE_SIZE + 1))
    with pytest.raises(DocrootError):
        docroot_files(tmp_path)
    (tmp_path / "big.bin").unlink()
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "64B.bin").write_bytes(b"x")
    with pytest.raises(DocrootError):
        docroot_files(tmp_path)


def test_docroot_skips_hidden_files_and_caches(tmp_path) -> None:
    (tmp_path / "a.txt").write_bytes(b"a")
    (tmp_path / ".hidden").write_bytes(b"h")
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "x.pyc").write_bytes(b"c")
    files = docroot_files(tmp_path)
    assert "a.txt" in files and ".hidden" not in files
    assert not any(path.startswith("__") for path in files)
