"""Side-by-side GIF animations of a forecast: input, truth and each method's prediction (Pillow text, imageio GIF).

Layout of every GIF frame, left to right: ``input`` | ``truth`` | one panel per prediction, method names above.

- Context phase (frames t-(Tc-1) ... t0): the input panel plays the context; truth and prediction panels are blank
  (light gray) because nothing is forecast yet. The footer reads ``context 3/10`` in gray.
- Forecast phase (lead times t+1 ... t+Tp): the input panel holds the last context frame (labelled ``t0 (last)``);
  truth and predictions play side by side with an orange border. The footer reads ``lead 4/10`` in orange.

Under each panel a label gives the time of the frame shown (``t-9`` ... ``t0``, ``t+1`` ... ``t+10``); a progress bar
under the panels shows how far into the sequence the animation is.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from convlstm.report._arrays import as_frames
from convlstm.report.colormaps import frames_to_rgb
from convlstm.utils.atomic import atomic_write_bytes
from convlstm.utils.checks import check_float, check_int, check_positive

__all__ = ["first_frame_png", "write_comparison_gif"]

_MARGIN = 8
_GAP = 8
_BORDER = 2
_WHITE = (255, 255, 255)
_TEXT = (34, 34, 34)
_MUTED = (120, 120, 120)
_BLANK = (222, 222, 222)
_CONTEXT = (150, 150, 150)
_FORECAST = (230, 120, 20)

_Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def _font(size: int) -> _Font:
    """Pillow's built-in font at ``size`` pixels (a bitmap font on Pillow builds without FreeType)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no size argument
        return ImageFont.load_default()


def _fit(text: str, font: _Font, width: int) -> str:
    """``text`` shortened with an ellipsis until it fits ``width`` pixels."""
    if font.getlength(text) <= width:
        return text
    while text and font.getlength(text + "\N{HORIZONTAL ELLIPSIS}") > width:
        text = text[:-1]
    return text + "\N{HORIZONTAL ELLIPSIS}"


def _time_label(offset: int) -> str:
    return "t0" if offset == 0 else f"t{offset:+d}"


def write_comparison_gif(
    context: Any,
    truth: Any,
    predictions: Mapping[str, Any],
    path: str | os.PathLike[str],
    *,
    fps: float = 4.0,
    scale: int | None = None,
    cmap: str | None = None,
    hold_last_s: float = 1.0,
) -> Path:
    """Write a looping GIF: input | truth | each prediction side by side, one GIF frame per time step.

    Args:
        context: Input frames (Tc, C, H, W), tensor or array, values in [0, 1] (clipped).
        truth: True future frames (Tp, C, H, W), or None for a forecast without truth (no truth panel).
        predictions: ``{method name: (Tp, C, H, W)}``, e.g. ``{"ConvLSTM": pred, "persistence": base}``; panels
            appear in this order.
        path: Where the GIF goes (written atomically).
        fps: GIF frames per second.
        scale: Integer nearest-neighbour upscaling of every frame; default makes panels at least 128 px wide (at most
            3x, at least 1x).
        cmap: ``None`` (grayscale / RGB), ``"rain"`` (radar pixels coloured by HKO-7 rain-rate classes),
            ``"rain_mm_h"`` or a matplotlib colormap name; see `convlstm.report.colormaps`.
        hold_last_s: Extra seconds the last frame stays before the loop restarts.

    Returns:
        ``path`` as a `Path`. The GIF has Tc + Tp frames.

    Examples:
        >>> write_comparison_gif(x[0], y[0], {"ConvLSTM": pred[0], "persistence": last[0]}, "out/forecast.gif")
    """
    ctx = as_frames(context, "context")
    if not isinstance(predictions, Mapping) or not predictions:
        raise ValueError(f"predictions must be a non-empty dict {{method name: (T, C, H, W)}}, got {predictions!r:.80}")
    target = as_frames(next(iter(predictions.values())) if truth is None else truth, "truth")
    if ctx.shape[1:] != target.shape[1:]:
        raise ValueError(
            f"context and truth must share (C, H, W), got context {tuple(ctx.shape)} and truth {tuple(target.shape)}"
        )
    preds = {str(name): as_frames(value, f"predictions[{name!r}]") for name, value in predictions.items()}
    for name, pred in preds.items():
        if pred.shape != target.shape:
            raise ValueError(
                f"predictions[{name!r}] must have truth's shape {tuple(target.shape)}, got {tuple(pred.shape)}"
            )
    check_positive("fps", fps)
    check_float("hold_last_s", hold_last_s, 0.0, math.inf)
    height, width = target.shape[2:]
    if scale is None:
        scale = min(3, max(1, math.ceil(128 / max(height, width))))
    else:
        check_int("scale", scale)

    def upscaled(frames: np.ndarray, name: str) -> np.ndarray:
        rgb = frames_to_rgb(frames, cmap, name=name)  # (T, H, W, 3) uint8
        return rgb.repeat(scale, axis=1).repeat(scale, axis=2)

    ctx_rgb = upscaled(ctx, "context")
    columns: list[tuple[str, np.ndarray | None]] = [("input", None)]
    if truth is not None:
        columns.append(("truth", upscaled(target, "truth")))
    columns += [(name, upscaled(pred, f"predictions[{name!r}]")) for name, pred in preds.items()]
    frames = _render(ctx_rgb, columns)
    durations = [1000.0 / fps] * len(frames)
    durations[-1] += 1000.0 * hold_last_s
    data = iio.imwrite("<bytes>", np.stack(frames), extension=".gif", duration=durations, loop=0)
    target_path = Path(path)
    atomic_write_bytes(target_path, data)
    return target_path


def _render(context: np.ndarray, columns: list[tuple[str, np.ndarray | None]]) -> list[np.ndarray]:
    """The GIF frames (H, W, 3) uint8: context (Tc, h, w, 3) upscaled, columns [(title, (Tp, h, w, 3) or None)]."""
    num_context, panel_h, panel_w = context.shape[:3]
    num_lead = next(frames for _, frames in columns if frames is not None).shape[0]
    font = _font(13)
    small = _font(11)
    title_h, label_h, footer_h = 20, 16, 22
    top = _MARGIN + title_h
    total = num_context + num_lead
    longest_phase = max(f"context {num_context}/{num_context}", f"lead {num_lead}/{num_lead}", key=len)
    phase_w = math.ceil(font.getlength(longest_phase)) + 12
    width = 2 * _MARGIN + len(columns) * (panel_w + 2 * _BORDER) + (len(columns) - 1) * _GAP
    width = max(width, 2 * _MARGIN + phase_w + 60)  # room for the footer with tiny panels
    height = top + panel_h + 2 * _BORDER + label_h + footer_h + _MARGIN
    lefts = [_MARGIN + k * (panel_w + 2 * _BORDER + _GAP) for k in range(len(columns))]

    base = Image.new("RGB", (width, height), _WHITE)
    draw = ImageDraw.Draw(base)
    for left, (name, _) in zip(lefts, columns, strict=True):
        text = _fit(name, font, panel_w + 2 * _BORDER)
        draw.text((left + (panel_w + 2 * _BORDER) / 2, _MARGIN + title_h - 4), text, fill=_TEXT, font=font, anchor="ms")

    bar_top = top + panel_h + 2 * _BORDER + label_h + 4
    bar_left, bar_right = _MARGIN + phase_w, width - _MARGIN
    frames = []
    for step in range(total):
        in_context = step < num_context
        lead = step - num_context  # index into the forecast frames when >= 0
        image = base.copy()
        draw = ImageDraw.Draw(image)
        for k, (left, (_, forecast)) in enumerate(zip(lefts, columns, strict=True)):
            picture: np.ndarray | None
            if forecast is None:  # the input column
                picture = context[step] if in_context else context[-1]
                label = _time_label(step - num_context + 1) if in_context else "t0 (last)"
                border = _CONTEXT
            else:
                picture = None if in_context else forecast[lead]
                label = "" if in_context else _time_label(lead + 1)
                border = _CONTEXT if in_context else _FORECAST
            draw.rectangle((left, top, left + panel_w + 2 * _BORDER - 1, top + panel_h + 2 * _BORDER - 1), fill=border)
            if picture is None:
                inner = (left + _BORDER, top + _BORDER, left + _BORDER + panel_w - 1, top + _BORDER + panel_h - 1)
                draw.rectangle(inner, fill=_BLANK)
                middle = (left + _BORDER + panel_w / 2, top + _BORDER + panel_h / 2)
                if small.getlength("from t+1") <= panel_w - 4:
                    draw.text(middle, "from t+1", fill=_MUTED, font=small, anchor="mm")
            else:
                image.paste(Image.fromarray(picture), (left + _BORDER, top + _BORDER))
            if label:
                center = left + (panel_w + 2 * _BORDER) / 2
                color = _MUTED if k == 0 and not in_context else _TEXT
                text = _fit(label, small, panel_w + 2 * _BORDER + _GAP - 2)
                draw.text((center, top + panel_h + 2 * _BORDER + 2), text, fill=color, font=small, anchor="mt")
        phase = f"context {step + 1}/{num_context}" if in_context else f"lead {lead + 1}/{num_lead}"
        phase_color = _CONTEXT if in_context else _FORECAST
        draw.text((_MARGIN, bar_top + 4), phase, fill=phase_color, font=font, anchor="lm")
        # Progress bar: gray for the context part, orange for the forecast part; filled up to this step.
        split = bar_left + (bar_right - bar_left) * num_context / total
        filled = bar_left + (bar_right - bar_left) * (step + 1) / total
        draw.rectangle((bar_left, bar_top, bar_right, bar_top + 8), outline=_BLANK, fill=_WHITE)
        draw.rectangle((bar_left, bar_top, min(filled, split), bar_top + 8), fill=_CONTEXT)
        if filled > split:
            draw.rectangle((split, bar_top, filled, bar_top + 8), fill=_FORECAST)
        frames.append(np.asarray(image))
    return frames


def first_frame_png(gif_path: str | os.PathLike[str], png_path: str | os.PathLike[str], *, frame: int = -1) -> Path:
    """Save one frame of a GIF as a PNG (e.g. a still for a README).

    Args:
        gif_path: An existing GIF, e.g. from [`write_comparison_gif`][convlstm.report.write_comparison_gif].
        png_path: Where the PNG goes (written atomically).
        frame: Index of the frame; negative counts from the end. The default -1 is the last lead time of a
            comparison GIF, where every panel is filled (frame 0 shows the first context frame and blank panels).

    Returns:
        ``png_path`` as a `Path`.
    """
    source = Path(gif_path)
    if not source.is_file():
        raise FileNotFoundError(f"gif_path: {str(source)!r} does not exist")
    frames = iio.imread(source, index=None, mode="RGB")  # (N, H, W, 3)
    if frames.ndim == 3:
        frames = frames[None]
    count = len(frames)
    check_int(f"frame of {str(source)!r} ({count} frames)", frame, -count, count - 1)
    target = Path(png_path)
    atomic_write_bytes(target, iio.imwrite("<bytes>", frames[frame], extension=".png"))
    return target
