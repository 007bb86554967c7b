"""Uploaded zip files: bounded extraction into a private per-session folder, removed when the session ends.

* **Refused before anything is written.** The zip's directory is read first: more than :data:`MAX_FILES`
  members, declared sizes adding up to more than :data:`MAX_BYTES`, a compression ratio above
  :data:`MAX_RATIO` (a zip bomb), unsafe or over-long names, links, a path that is both a file and a folder,
  or two members of one name are refused at once, with the upload's name and the reason.
* **Bounded while writing.** Declared sizes can lie: each member is cut off at its declared size, and the
  total at :data:`MAX_BYTES`; beyond either the extraction stops and is deleted.
* **Private.** Each session extracts under its own ``mkdtemp`` folder (mode 0700), removed when the
  session's state is dropped and when the server exits; a failed extraction is deleted at once and never
  reused.
* **Confined.** Members with absolute paths, ``..`` or links are refused; a dataset's ``image_path`` must
  point inside the uploaded folder (:func:`check_confined`).

Nothing here imports streamlit: the app keeps one :class:`UploadFolder` in its session state.
"""

from __future__ import annotations

import hashlib
import io
import shutil
import stat
import tempfile
import weakref
import zipfile
import zlib
from pathlib import Path, PurePosixPath

MAX_BYTES = 512 * 1024 * 1024  # extracted size of one upload
MAX_FILES = 20_000  # members of one upload
MAX_RATIO = 100  # declared extracted bytes per compressed byte, over the upload (real data: 1-10)
RATIO_FLOOR = 16 * 1024 * 1024  # uploads that extract to less than this are not checked for their ratio
NAME_MAX = 255  # bytes in one path component (Linux)
PATH_MAX = 1024  # bytes in a member's path
_CHUNK = 1 << 20


class UploadError(ValueError):
    """An upload that cannot be used; the message names the upload, never a server path."""


class UploadFolder:
    """A private temporary folder for one session's uploads, deleted with the object (or at exit)."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="fnlab-upload-"))
        self._extracted: dict[str, Path] = {}
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.path), True)

    def cleanup(self) -> None:
        self._finalizer()

    def hide(self, message: str) -> str:
        """``message`` with this folder's path replaced by ``<upload>``."""
        return message.replace(str(self.path), "<upload>")

    def extract(self, data: bytes, name: str, *, max_bytes: int | None = None, max_files: int | None = None) -> Path:
        """Extract zip ``data`` (the file ``name``) into a fresh subfolder and return it.

        The same bytes extracted before in this session return the same folder. Only one upload is kept: the
        previous one is removed.

        Raises:
            UploadError: not a zip, corrupt, unsafe member names, links, too many files or too large.
        """
        digest = hashlib.sha256(data).hexdigest()[:24]
        if digest in self._extracted and self._extracted[digest].is_dir():
            return self._extracted[digest]
        for old in self._extracted.values():
            shutil.rmtree(old, ignore_errors=True)
        self._extracted.clear()
        target = self.path / digest
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        try:
            _extract(data, name, target, MAX_BYTES if max_bytes is None else max_bytes,
                     MAX_FILES if max_files is None else max_files)
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)  # a failed extraction is never reused
            raise
        self._extracted[digest] = target
        return target


def _extract(data: bytes, name: str, target: Path, max_bytes: int, max_files: int) -> None:
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zlib.error, ValueError, EOFError) as err:
        raise UploadError(f"{name}: not a valid zip file ({_short(err)}); expected a zipped dataset folder") from None
    with zf:
        plan = _plan(zf, name, max_bytes, max_files)  # every check on the directory, before anything is written
        total = 0
        for info, parts in plan:
            dest = target.joinpath(*parts)
            try:
                if info.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                total += _copy_member(zf, info, dest, name, max_bytes - total, max_bytes)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError) as err:
                raise UploadError(f"{name}: member {info.filename!r} is corrupt ({_short(err)})") from None
            except (OSError, ValueError) as err:  # what the checks above did not foresee: still the upload's error
                why = err.strerror if isinstance(err, OSError) and err.strerror else _short(err)
                raise UploadError(f"{name}: member {info.filename!r} could not be extracted ({why})") from None


def _plan(zf: zipfile.ZipFile, name: str, max_bytes: int, max_files: int) -> list[tuple[zipfile.ZipInfo, tuple]]:
    """The members to extract with their path parts, after every check that the zip's directory allows.

    Raises:
        UploadError: too many members, too large or too compressed as declared, an unsafe or over-long name,
        a link, a path that is both a file and a folder, two members with one name.
    """
    members = zf.infolist()
    if len(members) > max_files:
        raise UploadError(f"{name}: holds {len(members):,} files; at most {max_files:,} are accepted")
    declared = sum(info.file_size for info in members)
    if declared > max_bytes:
        raise UploadError(f"{name}: extracts to {declared / 2**20:,.0f} MiB (its declared sizes); at most "
                          f"{max_bytes / 2**20:,.0f} MiB are accepted: upload a smaller dataset or load it from a "
                          "folder")
    packed = sum(info.compress_size for info in members)
    if declared > RATIO_FLOOR and declared > MAX_RATIO * max(packed, 1):
        raise UploadError(f"{name}: compressed {declared / max(packed, 1):,.0f} to 1 ({packed / 2**20:,.1f} MiB "
                          f"extracting to {declared / 2**20:,.0f} MiB); at most {MAX_RATIO} to 1 is accepted (a "
                          "zip bomb?)")
    plan, files, folders = [], set(), set()
    for info in members:
        parts = _parts(info, name)
        if info.is_dir():
            folders.add(parts)
        elif parts in files:
            raise UploadError(f"{name}: holds two members named {info.filename!r}; expected one file per path")
        else:
            files.add(parts)
        folders.update(parts[:i] for i in range(1, len(parts)))
        plan.append((info, parts))
    both = sorted(files & folders)
    if both:
        raise UploadError(f"{name}: holds {'/'.join(both[0])!r} both as a file and as a folder; expected each path "
                          "once")
    return plan


def _parts(info: zipfile.ZipInfo, name: str) -> tuple[str, ...]:
    parts = PurePosixPath(info.filename.replace("\\", "/")).parts
    if not parts or info.filename.startswith(("/", "\\")) or ".." in parts or ":" in parts[0] or "\x00" in \
            info.filename:
        raise UploadError(f"{name}: holds an unsafe path {info.filename!r}; expected paths inside the folder")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise UploadError(f"{name}: holds a link {info.filename!r}; links are not accepted")
    long = next((p for p in parts if len(p.encode("utf-8", "surrogateescape")) > NAME_MAX), None)
    if long is not None or len(info.filename.encode("utf-8", "surrogateescape")) > PATH_MAX:
        raise UploadError(f"{name}: holds a name too long for a file system ({info.filename[:60]!r}…); at most "
                          f"{NAME_MAX} bytes a name and {PATH_MAX} a path are accepted")
    return parts


def _copy_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, dest: Path, name: str, room: int, max_bytes: int) -> int:
    """Write one member, cut off at its declared size and at ``room`` bytes; returns the bytes written."""
    written = 0
    with zf.open(info) as src, open(dest, "wb") as out:
        while chunk := src.read(_CHUNK):
            written += len(chunk)
            if written > info.file_size:
                raise UploadError(f"{name}: member {info.filename!r} is larger than its declared size "
                                  f"({info.file_size:,} bytes); the zip is damaged or forged")
            if written > room:
                raise UploadError(f"{name}: extracts to more than {max_bytes / 2**20:,.0f} MiB; upload a smaller "
                                  "dataset or load it from a folder")
            out.write(chunk)
    return written


def _short(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[:160]


def dataset_root(folder: Path) -> tuple[str, Path]:
    """Where the dataset sits in an extracted upload: ``("folder", path)`` for a saved dataset
    (``dataset.json``), ``("pairs", path)`` for a pairs folder (``pairs.csv`` or ``pairs.parquet``).

    Raises:
        UploadError: neither is in the upload.
    """
    for marker, kind in (("dataset.json", "folder"), ("pairs.csv", "pairs"), ("pairs.parquet", "pairs")):
        hits = sorted(folder.rglob(marker), key=lambda p: len(p.parts))
        if hits:
            return kind, hits[0].parent
    raise UploadError("the zip holds no dataset: expected a saved dataset (dataset.json) or a pairs folder "
                      "(pairs.csv or pairs.parquet with a.npy and b.npy)")


def check_confined(ds, root: Path, what: str = "pairs table") -> None:
    """Refuse a dataset whose ``image_path`` column points outside ``root`` (an upload naming server files).

    Raises:
        UploadError: naming the first such row.
    """
    meta = ds.a_meta
    if "image_path" not in meta.columns:
        return
    root = root.resolve()
    for i, p in enumerate(meta["image_path"].tolist()):
        if not isinstance(p, str) or not p:
            continue
        resolved = Path(p).resolve()
        if resolved != root and root not in resolved.parents:
            raise UploadError(f"{what}: image_path of candidate {i} points outside the uploaded folder; "
                              "expected a path relative to the folder, without '..'")
