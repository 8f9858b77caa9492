"""Carry the CIFAR-10 JPEG copy to the lent GPU machine, which reaches no network and gets only
the repository (at most 64 MiB a call): the 60,000 JPEGs hold 52.7 MiB of bytes, but as files in a
zip or tar the per-file headers push them past the limit. So they travel as one blob + an index.

    python bench/gpu_data.py pack [--src ../shared/data/cifar10-jpeg] [--out .gpu-data]
    python bench/gpu_data.py unpack [--src .gpu-data] [--out /tmp/cifar10-jpeg]

`pack` (here) writes .gpu-data/cifar10.bin (the files' bytes, concatenated) and cifar10.json
(relative path, offset, size, sha256 of the blob); `.gpu-data/` is git-ignored and named in the
device call's `carry`. `unpack` (there) checks the hash and writes the ImageFolder tree back.
bench/gpu_check.sh unpacks it on its own when .gpu-data/cifar10.bin is present.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pack(src: Path, out: Path) -> Path:
    """Concatenate every file under src (sorted) into out/cifar10.bin with an index; return the blob."""
    files = sorted(p for p in src.rglob("*") if p.is_file())
    if not files:
        raise SystemExit(f"no files under {src}")
    out.mkdir(parents=True, exist_ok=True)
    blob, index, offset, digest = out / "cifar10.bin", [], 0, hashlib.sha256()
    with open(blob, "wb") as f:
        for p in files:
            data = p.read_bytes()
            f.write(data)
            digest.update(data)
            index.append([p.relative_to(src).as_posix(), offset, len(data)])
            offset += len(data)
    (out / "cifar10.json").write_text(json.dumps({"sha256": digest.hexdigest(), "files": index}))
    return blob


def unpack(src: Path, out: Path) -> int:
    """Write the indexed files back under out; refuse a blob whose hash or paths are off."""
    meta = json.loads((src / "cifar10.json").read_text())
    data = (src / "cifar10.bin").read_bytes()
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise SystemExit("cifar10.bin does not match its index (sha256)")
    root = out.resolve()
    for rel, offset, size in meta["files"]:
        dest = (root / rel).resolve()
        if root not in dest.parents:
            raise SystemExit(f"refusing a path outside {root}: {rel}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data[offset:offset + size])
    return len(meta["files"])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["pack", "unpack"])
    ap.add_argument("--src", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    if a.command == "pack":
        blob = pack(a.src or ROOT.parent / "shared" / "data" / "cifar10-jpeg", a.out or ROOT / ".gpu-data")
        print(f"{blob}: {blob.stat().st_size / 2**20:.1f} MiB")
    else:
        n = unpack(a.src or ROOT / ".gpu-data", a.out or Path("/tmp/cifar10-jpeg"))
        print(f"unpacked {n} files to {a.out or '/tmp/cifar10-jpeg'}")


if __name__ == "__main__":
    sys.exit(main())
