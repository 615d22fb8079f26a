"""Pure rules of the artifact proxy: path safety, MLflow's headers and listing JSON, part sizes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from runstream.api.artifacts.proxy import attachment, content_type, files_json, part_destination
from runstream.api.artifacts.store import (
    MAX_PARTS,
    FileInfo,
    clean_path,
    coalesce,
    file_path,
    part_size,
)
from runstream.schemas.errors import InvalidParameterValue

REFUSED = [
    "..",
    "../x",
    "a/../../x",
    "a/..",
    "%2e%2e/x",
    "%2E%2E%2Fx",
    "a/%252e%252e/x",
    "%25252e%25252e",
    "/etc/passwd",
    "//etc/passwd",
    "%2fetc/passwd",
    "a\\b",
    "..\\x",
    "a%5cb",
    "a\x00b",
    "a%00b",
    "a\nb",
    "a#b",
    "a%23b",
    "C:/x",
    "c:x",
    "C:\\x",
    "file:///etc/passwd",
    "file:x",
]


@pytest.mark.parametrize("raw", REFUSED)
def test_traversal_forms_are_refused(raw: str) -> None:
    with pytest.raises(InvalidParameterValue, match="Invalid path"):
        clean_path(raw)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("", ""),
        ("a", "a"),
        ("1/run/artifacts/", "1/run/artifacts"),
        ("./a/./b", "a/b"),
        ("a//b", "a/b"),
        ("a%2fb", "a/b"),
        ("x..y/..z/z..", "x..y/..z/z.."),
        ("déjà vu.txt", "déjà vu.txt"),
        ("a%20b", "a b"),
    ],
)
def test_safe_paths_are_canonical(raw: str, clean: str) -> None:
    assert clean_path(raw) == clean
    assert clean_path(clean) == clean


def test_a_file_path_names_something() -> None:
    with pytest.raises(InvalidParameterValue):
        file_path("./")
    assert file_path("a/b.txt") == "a/b.txt"


def test_multipart_destination_is_the_local_file_base_name() -> None:
    assert part_destination("1/r/artifacts", "/home/me/big.bin") == "1/r/artifacts/big.bin"
    assert part_destination("1/r/artifacts", "C:\\Users\\me\\big.bin") == "1/r/artifacts/big.bin"
    assert part_destination("", "big.bin") == "big.bin"
    for bad in ("/tmp/", "/tmp/..", "x/%2e%2e"):
        with pytest.raises(InvalidParameterValue):
            part_destination("1/r", bad)
    with pytest.raises(InvalidParameterValue):
        part_destination("1/../..", "big.bin")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.txt", "text/plain"),
        ("metrics.json", "text/plain"),
        ("conda.yaml", "text/plain"),
        ("MLmodel", "text/plain"),
        ("plot.png", "image/png"),
        ("page.html", "text/html"),
        ("model.pkl", "application/octet-stream"),
        ("noextension", "application/octet-stream"),
    ],
)
def test_content_type_as_mlflow(name: str, expected: str) -> None:
    assert content_type(f"1/r/artifacts/{name}") == expected


def test_content_disposition_as_mlflow() -> None:
    assert attachment("a.txt") == "attachment; filename=a.txt"
    assert attachment("a b.txt") == 'attachment; filename="a b.txt"'
    assert attachment('q"uote.txt') == 'attachment; filename="q\\"uote.txt"'
    assert attachment("déjà.txt") == (
        "attachment; filename=deja.txt; filename*=UTF-8''d%C3%A9j%C3%A0.txt"
    )
    assert attachment("日本.txt").startswith("attachment; filename=.txt;")
    assert attachment("日本").startswith("attachment; filename=download;")


def test_listing_json_omits_what_mlflow_omits() -> None:
    infos = [
        FileInfo("1/r/a.txt", False, 5),
        FileInfo("1/r/empty.txt", False, 0),
        FileInfo("1/r/sub", True),
    ]
    assert files_json(infos) == {
        "files": [
            {"path": "a.txt", "is_dir": False, "file_size": 5},
            {"path": "empty.txt", "is_dir": False},
            {"path": "sub", "is_dir": True},
        ]
    }
    assert files_json([]) == {}


def test_part_sizes_fit_s3_limits() -> None:
    minimum = 8 << 20
    assert part_size(100, minimum, 1) == minimum
    huge = 200 << 30
    assert part_size(huge, minimum, 1) * MAX_PARTS >= huge
    # Unknown length: parts double every 1,000, so 10,000 parts pass S3's 5 TB limit.
    total = sum(part_size(None, minimum, n) for n in range(1, MAX_PARTS + 1))
    assert total > 5 * 10**12
    assert part_size(None, minimum, 1000) == minimum
    assert part_size(None, minimum, 1001) == 2 * minimum


async def test_coalesce_rechunks_without_losing_bytes() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(10):
            yield bytes([i]) * (i * 7 + 1)

    blocks = [b async for b in coalesce(chunks(), 50)]
    assert all(len(b) == 50 for b in blocks[:-1])
    assert 0 < len(blocks[-1]) <= 50
    assert b"".join(blocks) == b"".join(bytes([i]) * (i * 7 + 1) for i in range(10))
