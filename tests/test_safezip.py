"""Hostile zips are refused before anything is read; good ones read back byte for byte."""

from __future__ import annotations

import io
import stat
import zipfile

import pytest

from cnnviz.data import safezip
from cnnviz.data import DatasetError, load_dataset_from_zip_bytes
from cnnviz.data.safezip import SafeZip, UnsafeZipError


def _zip(entries: list[tuple[str | zipfile.ZipInfo, bytes]], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in entries:
            zf.writestr(name, data)
    return buf.getvalue()


def test_good_zip_reads_back_exactly():
    files = {"a/one.txt": b"hello", "a/b/two.bin": bytes(range(256)) * 10}
    with SafeZip(_zip(list(files.items()))) as z:
        assert sorted(z.names) == sorted(files)
        for name, data in files.items():
            assert z.read(name) == data


def test_directories_are_not_listed_as_files():
    data = _zip([(zipfile.ZipInfo("cls/"), b""), ("cls/x.png", b"123")])
    with SafeZip(data) as z:
        assert z.names == ["cls/x.png"]


@pytest.mark.parametrize("name, words", [
    ("../evil.png", "'..'"),
    ("cls/../../evil.png", "'..'"),
    ("/etc/passwd", "absolute path"),
    ("C:/Windows/evil.png", "drive letter"),
    ("cls\\..\\evil.png", "backslash"),
])
def test_escaping_names_are_refused(name, words):
    info = zipfile.ZipInfo("placeholder")
    info.filename = name  # ZipInfo would normalise some of these; a hostile tool would not
    data = _zip([("ok/fine.png", b"x"), (info, b"payload")])
    with pytest.raises(UnsafeZipError, match=words) as err:
        SafeZip(data)
    assert isinstance(err.value, ValueError) and "\n" not in str(err.value)


def test_symlink_entry_is_refused():
    info = zipfile.ZipInfo("cls/link.png")
    info.create_system = 3  # Unix
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    data = _zip([("cls/a.png", b"x"), (info, b"/etc/passwd")])
    with pytest.raises(UnsafeZipError, match="symbolic link"):
        SafeZip(data)


def test_zip_bomb_high_ratio_is_refused():
    # 32 MiB of zeros deflates to ~32 KiB: a ratio of ~1000:1 (the limit is 100:1)
    data = _zip([("cls/bomb.png", bytes(32 * 1024 * 1024))])
    assert len(data) < 100_000
    with pytest.raises(UnsafeZipError, match="zip bomb"):
        SafeZip(data)


def test_huge_uncompressed_entry_and_total_are_refused():
    data = _zip([("cls/a.bin", bytes(5000)), ("cls/b.bin", bytes(5000))], method=zipfile.ZIP_STORED)
    with pytest.raises(UnsafeZipError, match="unpacks to 5,000 bytes"):
        SafeZip(data, max_entry_bytes=4000)
    with pytest.raises(UnsafeZipError, match="more than 8,000 bytes"):
        SafeZip(data, max_total_bytes=8000)


def test_entry_sizes_are_checked_against_the_defaults_from_the_header_alone():
    """A declared size over the 64 MiB default is refused without inflating anything."""
    data = bytearray(_zip([("cls/a.bin", b"tiny")], method=zipfile.ZIP_STORED))
    # patch the uncompressed size in the central directory (offset 24 of the record) to 1 GiB
    cd = data.rfind(b"PK\x01\x02")
    data[cd + 24:cd + 28] = (1 << 30).to_bytes(4, "little")
    with pytest.raises(UnsafeZipError, match="unpacks to 1,073,741,824 bytes"):
        SafeZip(bytes(data))


def test_too_many_entries_is_refused():
    data = _zip([(f"cls/{i}.png", b"") for i in range(12)], method=zipfile.ZIP_STORED)
    with pytest.raises(UnsafeZipError, match="too many entries: 12"):
        SafeZip(data, max_entries=10)


@pytest.mark.slow
def test_too_many_entries_default_limit():
    n = safezip.MAX_ENTRIES + 1
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for i in range(n):
            zf.writestr(f"c/{i}", b"")
    with pytest.raises(DatasetError, match=f"too many entries: {n:,}"):
        load_dataset_from_zip_bytes(buf.getvalue())


def test_duplicate_names_encrypted_and_garbage_are_refused():
    with pytest.raises(UnsafeZipError, match="appears twice"):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns about the duplicate while writing
            data = _zip([("cls/a.png", b"1"), ("cls/a.png", b"2")])
        SafeZip(data)
    enc = bytearray(_zip([("cls/secret.png", b"x")], method=zipfile.ZIP_STORED))
    cd = enc.rfind(b"PK\x01\x02")
    enc[cd + 8] |= 0x1  # general-purpose flag bit 0 in the central directory: encrypted
    with pytest.raises(UnsafeZipError, match="encrypted"):
        SafeZip(bytes(enc))
    with pytest.raises(UnsafeZipError, match="not a valid zip"):
        SafeZip(b"this is not a zip file at all")


@pytest.mark.parametrize("entries, words", [
    ([("../x/cls/a.png", b"x")], "Zip refused: entry name climbs out"),
    ([("cls/bomb.png", bytes(8 * 1024 * 1024))], "Zip refused: entry 'cls/bomb.png' compresses"),
])
def test_loader_reports_refusals_as_one_line_dataset_errors(entries, words):
    with pytest.raises(DatasetError, match=words) as err:
        load_dataset_from_zip_bytes(_zip(entries))
    assert "\n" not in str(err.value)
