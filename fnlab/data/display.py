"""Display helpers: an A item as an RGB array or a PNG data URI, a B item as text, and each side's
content (texts, image paths, labels) as columns for tables and exports.

No streamlit here: the app passes these values to ``st.image`` or an ``ImageColumn``. The words for
each side come from the dataset (:attr:`fnlab.data.base.MatchingDataset.nouns`).
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np

from fnlab.data.base import MatchingDataset
from fnlab.data.text import decode


def _to_hwc_uint8(arr: np.ndarray) -> np.ndarray:
    """``[C, H, W]`` or ``[H, W]`` or ``[H, W, C]`` pixels (uint8 or floats in [0, 1]) -> ``[H, W, 3]`` uint8."""
    a = np.asarray(arr)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"expected pixels [C, H, W], got shape {a.shape}")
    if a.shape[0] in (1, 3, 4) and a.shape[-1] not in (1, 3, 4):
        a = np.moveaxis(a, 0, -1)
    elif a.shape[0] in (1, 3, 4) and a.shape[-1] in (1, 3, 4) and a.shape[0] <= a.shape[-1]:
        a = np.moveaxis(a, 0, -1)
    if a.dtype != np.uint8:
        a = np.clip(np.rint(np.asarray(a, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    return np.ascontiguousarray(a[..., :3])


def image_array(ds: MatchingDataset, i: int) -> np.ndarray | None:
    """A item ``i`` as ``[H, W, 3]`` uint8, from its pixels or its ``image_path``; ``None`` if neither."""
    if ds.a_kind == "pixels" and ds.a_inputs is not None:
        return _to_hwc_uint8(ds.a_inputs[int(i)])
    if "image_path" in ds.a_meta.columns:
        path = ds.a_meta["image_path"].iloc[int(i)]
        if isinstance(path, str) and path and Path(path).is_file():
            from PIL import Image

            try:
                with Image.open(path) as im:
                    return _over_white(im)
            except OSError:
                return None
    return None


def _over_white(im) -> np.ndarray:
    """``[H, W, 3]`` uint8 of a PIL image, its transparent parts shown over white (a plain ``convert("RGB")``
    keeps the colour under them, often black: icons came out as black squares)."""
    from PIL import Image

    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return np.asarray(im.convert("RGB"))


def image_png(ds: MatchingDataset, i: int, size: int = 64) -> bytes | None:
    """PNG bytes of A item ``i`` scaled so its longer side is ``size`` pixels (nearest for small images)."""
    arr = image_array(ds, i)
    if arr is None:
        return None
    from PIL import Image

    im = Image.fromarray(arr)
    scale = size / max(im.size)
    new = (max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale)))
    resample = Image.NEAREST if scale >= 1 else Image.BILINEAR
    buf = io.BytesIO()
    im.resize(new, resample).save(buf, format="PNG")
    return buf.getvalue()


def image_data_uri(ds: MatchingDataset, i: int, size: int = 64) -> str | None:
    """``data:image/png;base64,...`` of A item ``i`` (for ``st.column_config.ImageColumn``), or ``None``."""
    png = image_png(ds, i, size)
    if png is None:
        return None
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def caption(ds: MatchingDataset, j: int) -> str:
    """Text of B item ``j``: its caption, else its decoded tokens, else ``"<noun> <id>"`` (``query 3``)."""
    j = int(j)
    if "text" in ds.b_meta.columns:
        return str(ds.b_meta["text"].iloc[j])
    if ds.b_kind == "tokens" and ds.vocab is not None and ds.b_inputs is not None:
        return decode(ds.b_inputs[j], ds.vocab)
    return f"{ds.nouns.b} {int(ds.b_ids[j])}"


def a_label(ds: MatchingDataset, i: int) -> str:
    """A short label of A item ``i``: its ``label`` column, else ``"<noun> <id>"`` (``candidate 7``)."""
    if "label" in ds.a_meta.columns:
        return str(ds.a_meta["label"].iloc[int(i)])
    return f"{ds.nouns.a} {int(ds.a_ids[int(i)])}"


def _meta_column(meta, column: str) -> np.ndarray | None:
    if column not in meta.columns:
        return None
    return meta[column].fillna("").astype(str).to_numpy(dtype=object)


def side_content(ds: MatchingDataset, side: str) -> dict[str, np.ndarray]:
    """What the dataset knows about each item of one side, as columns of one value per item.

    Always ``id`` (the item's id in the full dataset: the row of ``a.npy``/``b.npy`` of a ``pairs``
    folder); then, where the data have them, ``text`` (captions, decoded tokens or ``a_text``),
    ``image_path`` and ``label`` (side A's short description, where it differs from the text).

    Args:
        side: ``"a"`` or ``"b"``.

    Returns:
        ``{column: [n_side] object/int64 array}``.
    """
    if side not in ("a", "b"):
        raise ValueError(f"side must be 'a' or 'b', got {side!r}")
    meta = ds.a_meta if side == "a" else ds.b_meta
    out: dict[str, np.ndarray] = {"id": np.asarray(ds.a_ids if side == "a" else ds.b_ids, dtype=np.int64)}
    if side == "b":
        if "text" in meta.columns:  # as caption() gives them, in one pass over the column
            out["text"] = np.array([str(v) for v in meta["text"].to_numpy(dtype=object)], dtype=object)
        elif ds.b_kind == "tokens" and ds.vocab is not None and ds.b_inputs is not None:
            out["text"] = np.array([caption(ds, j) for j in range(ds.n_b)], dtype=object)
    elif (text := _meta_column(meta, "a_text")) is not None:
        out["text"] = text
    if (paths := _meta_column(meta, "image_path")) is not None:
        out["image_path"] = paths
    if side == "a" and (label := _meta_column(meta, "label")) is not None and not (
            "text" in out and np.array_equal(label, out["text"])):
        out["label"] = label
    return out
