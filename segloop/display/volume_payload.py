"""A whole volume packed once for the browser, so slice steps never go back to the server.

A desktop viewer steps a slice within a screen frame because the volume is already in memory; a
round trip per step (a Streamlit rerun, a new PNG, a new figure) costs ~250 ms. Here the scan and
its label map go to the browser once, as deflate-compressed little-endian voxel arrays, and the
browser cuts, windows and colours slices itself (`components/volume_view.js`, drawn by Plotly).

What is sent:

- The scan as uint8 or uint16 *codes* with a linear map back to intensities (``value = code *
  slope + intercept``). Integer scans whose range fits 8 or 16 bits are sent exactly (the MNI
  template, Decathlon crops, scanner DICOM); other scans are quantised to 65,536 levels over their
  range, far finer than a display's 256 grey levels. Windowing in the browser therefore gives the
  same grey levels as `segloop.display.windowing.apply_window` (to within one level for exact
  codes; quantised codes are within half a code step, which shows only in windows narrower than
  about 256 code steps).
- Label maps as uint8 (uint16 when a label exceeds 255), unchanged.
- For each plane, where slice pixels sit in the flat array (`plane_geometry`), derived from
  `segloop.display.planes.slice_view` itself so the browser shows exactly what the editing tools
  write to.

Payload budget: at most 2 bytes per voxel before compression, one volume for all three planes
(about 1.6 MB for the 197x233x189 MNI template, 8 bits exact).
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass

import numpy as np

from segloop.display import planes

#: zlib level 1: ~2x faster than level 6 on head volumes for a few percent more bytes.
COMPRESS_LEVEL = 1


@dataclass(frozen=True)
class PackedVolume:
    """A volume ready for the browser.

    Parameters
    ----------
    data : bytes
        zlib stream (RFC 1950, what the browser's ``DecompressionStream("deflate")`` reads) of the
        codes in C order, little-endian.
    dtype : {"uint8", "uint16"}
        Code type.
    shape : tuple of 3 int
        (X, Y, Z), RAS voxel order.
    slope, intercept : float
        ``value = code * slope + intercept``.
    exact : bool
        True when every voxel's value is reproduced exactly.
    digest : str
        Hex digest of the codes and the map: equal digests, equal volumes.
    """

    data: bytes
    dtype: str
    shape: tuple[int, int, int]
    slope: float
    intercept: float
    exact: bool
    digest: str

    def meta(self) -> dict:
        """JSON-ready description (everything but the bytes)."""
        return {"dtype": self.dtype, "shape": list(self.shape), "slope": self.slope,
                "intercept": self.intercept, "exact": self.exact, "digest": self.digest}


def quantize(array: np.ndarray) -> tuple[np.ndarray, float, float, bool]:
    """Codes for a scan: exact integers when they fit 8 or 16 bits, else 65,536 levels over its range.

    Parameters
    ----------
    array : np.ndarray, shape (X, Y, Z)
        Intensities of any real dtype; non-finite values are drawn as the minimum.

    Returns
    -------
    codes : np.ndarray of uint8 or uint16, shape (X, Y, Z)
    slope, intercept : float
        ``value = code * slope + intercept``.
    exact : bool
        True when the map reproduces every finite value exactly.

    Examples
    --------
    >>> import numpy as np
    >>> codes, slope, intercept, exact = quantize(np.array([[[2.0, 139.0]]], np.float32))
    >>> codes.dtype.name, codes.ravel().tolist(), slope, intercept, exact
    ('uint8', [0, 137], 1.0, 2.0, True)
    >>> codes, slope, intercept, exact = quantize(np.array([[[0.0, 0.5, 1.0]]]))
    >>> codes.dtype.name, codes.ravel().tolist(), exact
    ('uint16', [0, 32768, 65535], False)
    """
    a = np.asarray(array)
    finite = np.isfinite(a)
    if not finite.all():
        a = np.where(finite, a, np.nanmin(np.where(finite, a, np.inf)) if finite.any() else 0)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    integral = np.issubdtype(a.dtype, np.integer) or bool(np.all(a == np.round(a)))
    if integral and hi - lo <= 65535:
        dtype = np.uint8 if hi - lo <= 255 else np.uint16
        return (a - lo).astype(dtype), 1.0, lo, True
    span = hi - lo if hi > lo else 1.0
    slope = span / 65535.0
    codes = np.rint((a.astype(np.float64) - lo) / slope).astype(np.uint16)
    return codes, slope, lo, False


def pack(codes: np.ndarray, slope: float = 1.0, intercept: float = 0.0, exact: bool = True) -> PackedVolume:
    """Compress uint8/uint16 codes (a label map, or `quantize`'s output) for the browser.

    Parameters
    ----------
    codes : np.ndarray of uint8 or uint16, shape (X, Y, Z)
    slope, intercept : float, optional
        Map back to values (labels: 1 and 0).
    exact : bool, optional
        Whether the codes reproduce the values exactly.

    Returns
    -------
    PackedVolume

    Raises
    ------
    ValueError
        When `codes` is not uint8/uint16 or not 3-D.

    Examples
    --------
    >>> import numpy as np, zlib
    >>> p = pack(np.arange(8, dtype=np.uint8).reshape(2, 2, 2))
    >>> p.dtype, p.shape, list(zlib.decompress(p.data))
    ('uint8', (2, 2, 2), [0, 1, 2, 3, 4, 5, 6, 7])
    """
    c = np.asarray(codes)
    if c.ndim != 3 or c.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"expected 3-D uint8 or uint16 codes, got {c.dtype} of shape {c.shape}")
    raw = np.ascontiguousarray(c, dtype=c.dtype.newbyteorder("<")).tobytes()
    digest = hashlib.blake2b(raw, digest_size=16, person=f"{c.dtype.name}{c.shape}"[:16].encode())
    digest.update(np.array([slope, intercept], np.float64).tobytes())
    return PackedVolume(zlib.compress(raw, COMPRESS_LEVEL), c.dtype.name, tuple(int(n) for n in c.shape),
                        float(slope), float(intercept), bool(exact), digest.hexdigest())


def pack_scan(array: np.ndarray) -> PackedVolume:
    """`quantize` then `pack` a scan.

    Parameters
    ----------
    array : np.ndarray, shape (X, Y, Z)

    Returns
    -------
    PackedVolume
    """
    return pack(*quantize(array))


def pack_labels(labels: np.ndarray) -> PackedVolume:
    """Pack a label map as it is (uint8, or uint16 when a value exceeds 255).

    Parameters
    ----------
    labels : np.ndarray of int, shape (X, Y, Z)
        Non-negative label values up to 65535.

    Returns
    -------
    PackedVolume

    Raises
    ------
    ValueError
        When a value is negative or above 65535.
    """
    lab = np.asarray(labels)
    if lab.dtype not in (np.uint8, np.uint16):
        lo, hi = (int(lab.min()), int(lab.max())) if lab.size else (0, 0)
        if lo < 0 or hi > 65535:
            raise ValueError(f"label values must be within 0..65535, found {lo}..{hi}")
        lab = lab.astype(np.uint8 if hi <= 255 else np.uint16)
    return pack(lab)


def plane_geometry(shape: tuple[int, int, int], plane: str) -> dict:
    """Where the pixels of each slice of `plane` sit in the flat C-order array of a (X, Y, Z) volume.

    Pixel (row, col) of slice `k` is element ``origin + k * slice + row * row_step + col * col_step``
    of the flattened array, exactly the element `planes.slice_view` shows there.

    Parameters
    ----------
    shape : tuple of 3 int
        (X, Y, Z), RAS voxel order.
    plane : {"axial", "coronal", "sagittal"}

    Returns
    -------
    dict
        ``n`` (slices), ``rows``, ``cols``, ``origin``, ``slice``, ``row_step``, ``col_step`` (int
        offsets in elements) and ``axis`` (the RAS axis the slice index runs along).

    Examples
    --------
    >>> g = plane_geometry((2, 3, 4), "axial")
    >>> g["n"], g["rows"], g["cols"], g["origin"], g["slice"], g["row_step"], g["col_step"]
    (4, 3, 2, 20, 1, -4, -12)
    """
    # Read the offsets off the view's strides: an uninitialised uint8 volume costs no memory traffic
    # (unlike an index volume, 70 MB for a whole head on every page run), and slice_view only reshuffles it.
    base = np.empty(tuple(int(n) for n in shape), np.uint8)
    start = base.__array_interface__["data"][0]
    n = planes.n_slices(base.shape, plane)
    first = planes.slice_view(base, plane, 0)
    offset = first.__array_interface__["data"][0] - start
    step = planes.slice_view(base, plane, 1).__array_interface__["data"][0] - start - offset if n > 1 else 0
    rows, cols = first.shape
    return {
        "n": int(n), "rows": int(rows), "cols": int(cols), "origin": int(offset), "slice": int(step),
        "row_step": int(first.strides[0]) if rows > 1 else 0,
        "col_step": int(first.strides[1]) if cols > 1 else 0,
        "axis": planes.PLANE_AXIS[plane],
    }
