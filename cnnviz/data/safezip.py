"""Reading zip files that may be hostile, without extracting anything to disk.

Every entry is checked before any is read: bounded entry count, per-entry and total
uncompressed size, compression ratio (zip bombs), names that could escape a folder
(`..`, absolute paths, drive letters, backslashes, NUL), symlinks (Unix mode in
external_attr) and encrypted entries. Members are then read into memory with a read
bounded by the declared size, so nothing is ever written outside the caller's control.
"""

from __future__ import annotations

import io
import re
import stat
import zipfile
from pathlib import Path

MAX_ENTRIES = 100_000
MAX_ENTRY_BYTES = 64 * 1024 * 1024
MAX_TOTAL_BYTES = 2 * 1024 * 1024 * 1024
MAX_RATIO = 100.0          # uncompressed / compressed, checked for entries above RATIO_MIN_BYTES
RATIO_MIN_BYTES = 1024 * 1024

_DRIVE = re.compile(r"^[A-Za-z]:")


class UnsafeZipError(ValueError):
    """The zip was refused; the message says which rule it broke."""


def check_name(name: str) -> str:
    """Return `name` if it is a safe relative posix path inside the archive, else raise."""
    if not name:
        raise UnsafeZipError("an entry has an empty name")
    if "\x00" in name:
        raise UnsafeZipError(f"entry name contains a NUL byte: {name!r}")
    if "\\" in name:
        raise UnsafeZipError(f"entry name contains a backslash: {name!r}")
    if name.startswith("/"):
        raise UnsafeZipError(f"entry has an absolute path: {name!r}")
    if _DRIVE.match(name):
        raise UnsafeZipError(f"entry name starts with a drive letter: {name!r}")
    if any(part == ".." for part in name.split("/")):
        raise UnsafeZipError(f"entry name climbs out of the archive with '..': {name!r}")
    return name


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    mode = (info.external_attr >> 16) & 0xFFFF
    return stat.S_ISLNK(mode)


class SafeZip:
    """A validated zip archive; `names` lists its files, `read(name)` returns one file's bytes."""

    def __init__(self, source: bytes | str | Path, *, max_entries: int = MAX_ENTRIES,
                 max_entry_bytes: int = MAX_ENTRY_BYTES, max_total_bytes: int = MAX_TOTAL_BYTES,
                 max_ratio: float = MAX_RATIO) -> None:
        try:
            fileobj = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else open(source, "rb")
        except OSError as exc:
            raise UnsafeZipError(f"cannot open the zip file ({exc.strerror or exc})") from None
        try:
            self._zf = zipfile.ZipFile(fileobj)
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            fileobj.close()
            raise UnsafeZipError(f"not a valid zip file ({exc})") from None
        try:
            self._infos = self._validate(max_entries, max_entry_bytes, max_total_bytes, max_ratio)
        except BaseException:
            self.close()
            raise

    def _validate(self, max_entries: int, max_entry_bytes: int, max_total_bytes: int,
                  max_ratio: float) -> dict[str, zipfile.ZipInfo]:
        infos = self._zf.infolist()
        if len(infos) > max_entries:
            raise UnsafeZipError(f"too many entries: {len(infos):,} (limit {max_entries:,})")
        total = 0
        files: dict[str, zipfile.ZipInfo] = {}
        for info in infos:
            check_name(info.filename)
            if _is_symlink(info):
                raise UnsafeZipError(f"entry is a symbolic link: {info.filename!r}")
            if info.flag_bits & 0x1:
                raise UnsafeZipError(f"entry is encrypted: {info.filename!r}")
            if info.is_dir():
                continue
            if info.file_size > max_entry_bytes:
                raise UnsafeZipError(f"entry {info.filename!r} unpacks to {info.file_size:,} bytes "
                                     f"(limit {max_entry_bytes:,})")
            if info.file_size > RATIO_MIN_BYTES and info.file_size > max_ratio * max(info.compress_size, 1):
                ratio = info.file_size / max(info.compress_size, 1)
                raise UnsafeZipError(f"entry {info.filename!r} compresses {ratio:,.0f}:1 "
                                     f"(limit {max_ratio:,.0f}:1): looks like a zip bomb")
            total += info.file_size
            if total > max_total_bytes:
                raise UnsafeZipError(f"the archive unpacks to more than {max_total_bytes:,} bytes")
            if info.filename in files:
                raise UnsafeZipError(f"entry name appears twice: {info.filename!r}")
            files[info.filename] = info
        return files

    @property
    def names(self) -> list[str]:
        """The archive's file (not folder) names, in archive order."""
        return list(self._infos)

    def sizes(self, name: str) -> tuple[int, int]:
        """(uncompressed, compressed) bytes of one member, from the archive's directory."""
        info = self._infos[name]
        return int(info.file_size), int(info.compress_size)

    def read(self, name: str) -> bytes:
        """One member's bytes, read in memory; never more than its declared size."""
        info = self._infos[name]
        try:
            with self._zf.open(info) as f:
                data = f.read(info.file_size + 1)
        except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
            raise UnsafeZipError(f"entry {name!r} cannot be read ({exc})") from None
        if len(data) > info.file_size:
            raise UnsafeZipError(f"entry {name!r} is larger than it declares")
        return data

    def close(self) -> None:
        fp = getattr(self._zf, "fp", None)
        self._zf.close()
        if fp is not None:
            fp.close()

    def __enter__(self) -> SafeZip:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
