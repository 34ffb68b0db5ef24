"""Faces' logits back into the photo: each crop's parse warped back through the inverse of its
transform, faces that overlap merged pixel by pixel by confidence, the zoomed-out crops labeling
only what no face's own crop covers (:mod:`trainer.faces` frames the crops)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from trainer.faces import footprint

# Output pixels per band when warping logits back (memory: classes × band × 4 bytes).
_BAND_PIXELS = 1 << 20


def paste_logits(
    logits: Sequence[torch.Tensor],
    transforms: Sequence[np.ndarray],
    shape: tuple[int, int],
    band_pixels: int | None = None,
    fill: tuple[Sequence[torch.Tensor], Sequence[np.ndarray]] | None = None,
    confidence: bool = True,
    hair: tuple[Sequence[torch.Tensor], Sequence[np.ndarray], Sequence[np.ndarray]] | None = None,
    fill_masks: Sequence[np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Warp each face's logits back into the photo and merge them by confidence.

    Args:
        logits: per face, (C, S, S) float class logits of its crop.
        transforms: per face, its photo -> crop transform (at side S).
        shape: (H, W) of the photo.
        fill: more (logits, transforms), e.g. the faces zoomed out, that label only the pixels
            no crop of ``logits`` covers (merged among themselves by confidence).
        confidence: False: return no confidence map (a 200-megapixel photo's is 800 MB).
        hair: (logits, transforms, masks) of faces zoomed out further: where no crop of
            ``logits`` or ``fill`` reaches, they label the pixels their (S, S) bool masks keep
            (:func:`trainer.face_parses.hair_mask`: the hair they add); the rest stays as it was.
        fill_masks: per ``fill`` crop, (S, S) bool: it labels only these pixels of its crop
            (:func:`trainer.face_parses.fill_mask`), and the pixels it leaves out count as
            background for the photo pixels beside them; default: all.

    Returns:
        label (H, W) uint8: the most probable class of the most confident face at each pixel,
        0 (background) outside every face; confidence (H, W) float32: that class's softmax
        probability, 1.0 outside every face (None when not asked for). Besides these, the
        memory used is 5 bytes a pixel over the box the crops cover.
    """
    height, width = shape
    label = np.zeros((height, width), np.uint8)
    fill_logits, fill_transforms = fill if fill is not None else ((), ())
    hair_logits, hair_transforms, hair_masks = hair if hair is not None else ((), (), ())
    every = [*logits, *fill_logits, *hair_logits]
    boxes = [
        footprint(m, int(x.shape[-1]), shape)
        for x, m in zip(every, [*transforms, *fill_transforms, *hair_transforms], strict=True)
    ]
    boxes = [b for b in boxes if b is not None]
    if not boxes:
        return label, np.ones((height, width), np.float32) if confidence else None
    # Work only over the pixels some crop covers (a face in a 12-megapixel photo covers a few).
    ux0, uy0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    ux1, uy1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    region = (ux0, uy0, ux1, uy1)
    out_label = label[uy0:uy1, ux0:ux1]
    # The confidence of the face that claimed each pixel; 0: no face has claimed it.
    best = np.zeros(out_label.shape, np.float32)
    _paste_into(out_label, best, logits, transforms, shape, region, band_pixels)
    if fill is not None:
        # The zoomed-out crops compete among themselves for the pixels no face crop claimed.
        _paste_into(out_label, best, fill_logits, fill_transforms, shape, region, band_pixels,
                    blocked=best > 0, masks=fill_masks, left_out_is_background=True)  # fmt: skip
    if hair_logits:
        # The faces zoomed out further, past every nearer crop, only where their masks keep
        # hair (trainer.face_parses.hair_mask).
        _paste_into(out_label, best, hair_logits, hair_transforms, shape, region, band_pixels,
                    blocked=best > 0, masks=hair_masks)  # fmt: skip
    if not confidence:
        return label, None
    full = np.ones((height, width), np.float32)
    np.copyto(full[uy0:uy1, ux0:ux1], best, where=best > 0)
    return label, full


def _paste_into(
    label, best, logits, transforms, shape, region, band_pixels, blocked=None, masks=None, left_out_is_background=False
) -> None:
    """Paste ``logits`` into ``label``/``best`` (arrays over ``region``, an (x0, y0, x1, y1)
    box of the photo) where each is more confident than ``best`` (and not ``blocked``); with
    ``masks`` (per crop, (S, S) bool or None), only where the crop pixel is in its mask; with
    ``left_out_is_background`` too, the pixels a mask leaves out count as background for the
    photo pixels interpolated beside them (:func:`_left_out_as_background`).

    A photo pixel's class is the argmax of the crop's class logits interpolated bilinearly at
    the point it maps to (OpenCV's sampling). Where the four crop pixels around that point share
    their top class, that class is the argmax (a convex mix of score vectors that agree on the
    top class keeps it), so only pixels near a class edge in the crop are interpolated, with
    ``cv2.remap`` over all classes; the rest take the class of their cell, looked up by a
    nearest-neighbour ``cv2.warpAffine`` of the cell classes (a face in a 12-megapixel photo is
    mostly such pixels; a face filling a 200-megapixel one, all but a few). The confidence is
    the crop's own top-class probability (softmax at the crop's resolution) warped bilinearly.
    (The softmax of the interpolated logits at every photo pixel differs only along class edges
    and costs an exp per class and pixel.)
    """
    rx, ry = region[0], region[1]
    nearest, linear = cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP, cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    for face_logits, m, mask in zip(logits, transforms, masks or [None] * len(logits), strict=True):
        size = int(face_logits.shape[-1])
        box = footprint(m, size, shape)
        if box is None:
            continue
        x0, y0, x1, y1 = box
        m = np.asarray(m, np.float64)
        scores = face_logits.float()
        if mask is not None and left_out_is_background:
            scores = _left_out_as_background(scores, np.asarray(mask, bool))
        hwc = np.ascontiguousarray(scores.permute(1, 2, 0).numpy())
        sure = np.ascontiguousarray(torch.softmax(scores, dim=0).amax(dim=0).numpy())
        cell = _cell_classes(hwc)
        crop = np.ones((size, size), np.uint8) if mask is None else np.asarray(mask, np.uint8)
        rows = max(1, (band_pixels or _BAND_PIXELS) // max(1, x1 - x0))
        for b0 in range(y0, y1, rows):
            b1 = min(y1, b0 + rows)
            band = (x1 - x0, b1 - b0)
            # Band pixel (j, i) has its centre at photo (x0 + j + 0.5, b0 + i + 0.5); `centre`
            # maps it to the crop point q it falls on.
            centre = np.hstack([m[:, :2], (m[:, :2] @ np.array([x0 + 0.5, b0 + 0.5]) + m[:, 2])[:, None]])
            # The crop's pixels are where q lies in [0, S)² (the same test as the app's face
            # coverage, faceparse_app/faces.py): nearest-neighbour sampling rounds q - 0.5.
            half = centre - np.array([[0.0, 0.0, 0.5], [0.0, 0.0, 0.5]])
            inside = cv2.warpAffine(crop, half, band, flags=nearest,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=0).view(bool)  # fmt: skip
            if blocked is not None:
                inside &= ~blocked[b0 - ry : b1 - ry, x0 - rx : x1 - rx]
            if not inside.any():
                continue
            # Bilinear sampling at q reads cell floor(q - 0.5) + 1 = round(q).
            arg = cv2.warpAffine(cell, centre, band, flags=nearest, borderMode=cv2.BORDER_REPLICATE)
            edge = inside & (arg == _MIXED)
            if edge.any():
                ii, jj = np.nonzero(edge)
                px, py = jj + (x0 + 0.5), ii + (b0 + 0.5)
                # OpenCV samples crop pixel centres at integer coordinates: shift by half a pixel.
                u = (m[0, 0] * px + m[0, 1] * py + m[0, 2] - 0.5).astype(np.float32)
                v = (m[1, 0] * px + m[1, 1] * py + m[1, 2] - 0.5).astype(np.float32)
                arg[ii, jj] = _interpolated_argmax(hwc, u, v)
            conf_np = cv2.warpAffine(sure, half, band, flags=linear, borderMode=cv2.BORDER_REPLICATE)
            rows_, cols = slice(b0 - ry, b1 - ry), slice(x0 - rx, x1 - rx)
            take = inside & (conf_np > best[rows_, cols])
            np.copyto(label[rows_, cols], arg, where=take)
            np.copyto(best[rows_, cols], conf_np, where=take)


_MIXED = 255  # a cell whose four corner pixels disagree on the top class


def _left_out_as_background(scores: torch.Tensor, keep: np.ndarray) -> torch.Tensor:
    """(C, S, S) ``scores`` with the pixels outside ``keep`` ((S, S) bool) made background:
    class 0 takes their top logit, every other class their lowest. The photo pixels beside a
    region left out are still the crop's logits interpolated, so they blend their own class
    with background only: with the region's own logits, a lone blob left out still drew a
    hollow outline of its class, a few photo pixels wide, where it had been. (For the zoomed-out
    parse only: beside the hair the widest parse adds, it pulled real hair edges in.)"""
    drop = torch.from_numpy(~keep)
    if not bool(drop.any()):
        return scores
    out = scores.clone()
    out[:, drop] = scores.amin(dim=0)[drop]
    out[0, drop] = scores.amax(dim=0)[drop]
    return out


def _interpolated_argmax(hwc: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The top class of the (S, S, C) scores sampled bilinearly at the points (u, v) (OpenCV's
    coordinates, edge pixels replicated past the border)."""
    n, width = len(u), _REMAP_WIDTH
    pad = -n % width  # cv2.remap takes maps under 32767 on a side: points as rows of `width`
    mu = np.concatenate([u, np.zeros(pad, np.float32)]).reshape(-1, width)
    mv = np.concatenate([v, np.zeros(pad, np.float32)]).reshape(-1, width)
    sampled = cv2.remap(hwc, mu, mv, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return sampled.reshape(-1, hwc.shape[-1])[:n].argmax(axis=-1)


_REMAP_WIDTH = 4096


def _cell_classes(hwc: np.ndarray) -> np.ndarray:
    """(S+1, S+1) uint8: for each cell between crop pixels (the crop padded by one edge pixel,
    as OpenCV's replicated border samples it), the top class its four corners share, or
    :data:`_MIXED`. Bilinear sampling at coordinate q reads cell ``floor(q) + 1``."""
    top = np.pad(hwc.argmax(axis=-1).astype(np.uint8), 1, mode="edge")
    c = top[:-1, :-1]
    agree = (c == top[1:, :-1]) & (c == top[:-1, 1:]) & (c == top[1:, 1:])
    return np.where(agree, c, _MIXED).astype(np.uint8)
