"""The dashboard's charts, drawn on the server as SVG: no chart library, nothing to download.

Each function takes plain numbers and returns the ``<svg>`` markup, with a ``<title>`` and an
``aria-label`` that say in words what it shows.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

import numpy as np

WIDTH, HEIGHT = 480, 200
PAD_L, PAD_R, PAD_T, PAD_B = 44, 12, 24, 32
INK = "#1f2328"  # axes and labels: 15:1 on white
CLEAN = "#5b6b7f"
FLAGGED = "#b3261e"
CURVE = "#0b5cad"


def _frame(label: str, body: list[str]) -> str:
    return (
        f'<svg class="chart" role="img" aria-label="{escape(label)}" viewBox="0 0 {WIDTH} '
        f'{HEIGHT}" width="{WIDTH}" height="{HEIGHT}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(label)}</title>{''.join(body)}</svg>"
    )


def _axes(
    x_label: str, y_label: str, y_max: float, x_ticks: Sequence[tuple[float, str]]
) -> list[str]:
    x0, y0, x1 = PAD_L, HEIGHT - PAD_B, WIDTH - PAD_R
    out = [
        f'<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" stroke="{INK}"/>',
        f'<line x1="{x0}" y1="{PAD_T}" x2="{x0}" y2="{y0}" stroke="{INK}"/>',
        f'<text x="{(x0 + x1) / 2}" y="{HEIGHT - 4}" text-anchor="middle" fill="{INK}" '
        f'font-size="11">{escape(x_label)}</text>',
        f'<text x="{x0}" y="12" fill="{INK}" font-size="11">{escape(y_label)}</text>',
        f'<text x="{x0 - 4}" y="{PAD_T + 4}" text-anchor="end" fill="{INK}" '
        f'font-size="10">{_num(y_max)}</text>',
        f'<text x="{x0 - 4}" y="{y0}" text-anchor="end" fill="{INK}" font-size="10">0</text>',
    ]
    for fraction, text in x_ticks:
        x = x0 + fraction * (x1 - x0)
        out.append(
            f'<text x="{x:.1f}" y="{y0 + 13}" text-anchor="middle" fill="{INK}" '
            f'font-size="10">{escape(text)}</text>'
        )
    return out


def _num(value: float) -> str:
    return f"{value:.3g}"


def clean_density(
    xs: np.ndarray, *, noisy_share: float, clean_centre: float, clean_spread: float
) -> np.ndarray:
    """The density, over noise scores ``xs`` (in (0, 1)), of the clean component that the
    engine's flag fitted to the evidence (``models.flagging``; the audit's summary ``mixture``),
    weighted by its share: a Gaussian on the evidence, carried onto the score's axis through
    ``score = 1/2 + atan(evidence) / pi``.
    """
    inner = np.clip(xs, 1e-6, 1 - 1e-6)
    evidence = np.tan(math.pi * (inner - 0.5))
    gauss = np.exp(-0.5 * ((evidence - clean_centre) / clean_spread) ** 2) / (
        clean_spread * math.sqrt(2 * math.pi)
    )
    density: np.ndarray = (1.0 - noisy_share) * gauss * math.pi * (1.0 + evidence**2)
    return density


def threshold(scores: Sequence[tuple[float, bool]]) -> float | None:
    """The flag's boundary on the score axis: midway between the highest score not flagged and
    the lowest flagged (None when either group is empty).
    """
    flagged = [s for s, f in scores if f]
    clean = [s for s, f in scores if not f]
    if not flagged or not clean:
        return None
    return (max(clean) + min(flagged)) / 2 if max(clean) < min(flagged) else min(flagged)


def histogram(
    scores: Sequence[tuple[float, bool]],
    *,
    mixture: Mapping[str, float] | None = None,
    bins: int = 20,
) -> str:
    """Noise scores ``(score, flagged)`` in ``bins`` bins over [0, 1], flagged stacked on the
    rest, with the flag threshold and, where the audit's summary has it, the clean component of
    the flag's own mixture (``mixture``: ``noisy_share``, ``clean_centre``, ``clean_spread``)
    scaled to counts.
    """
    edges = np.linspace(0, 1, bins + 1)
    values = np.array([s for s, _ in scores], np.float64)
    flags = np.array([f for _, f in scores], bool)
    clean_counts, _ = np.histogram(values[~flags], edges)
    flagged_counts, _ = np.histogram(values[flags], edges)
    top = max(1, int((clean_counts + flagged_counts).max(initial=0)))
    x0, y0, x1 = PAD_L, HEIGHT - PAD_B, WIDTH - PAD_R
    bar = (x1 - x0) / bins
    scale = (y0 - PAD_T) / top
    body = _axes("noise score", "cases", top, [(t, f"{t:.1f}") for t in (0, 0.25, 0.5, 0.75, 1)])
    for i in range(bins):
        base = y0
        for count, colour, what in (
            (clean_counts[i], CLEAN, "not flagged"),
            (flagged_counts[i], FLAGGED, "flagged"),
        ):
            if count:
                h = count * scale
                body.append(
                    f'<rect class="bar" x="{x0 + i * bar + 1:.1f}" y="{base - h:.1f}" '
                    f'width="{bar - 2:.1f}" height="{h:.1f}" fill="{colour}">'
                    f"<title>{count} {what}, {edges[i]:.2f}-{edges[i + 1]:.2f}</title></rect>"
                )
                base -= h
    if mixture and values.size:
        xs = np.linspace(0, 1, 241)
        dens = clean_density(
            xs,
            noisy_share=float(mixture["noisy_share"]),
            clean_centre=float(mixture["clean_centre"]),
            clean_spread=float(mixture["clean_spread"]),
        )
        ys = y0 - np.minimum(dens * len(values) / bins * scale, y0 - PAD_T)
        points = " ".join(f"{x0 + x * (x1 - x0):.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
        body.append(
            f'<polyline class="mixture" points="{points}" fill="none" stroke="{CURVE}" '
            'stroke-width="2"><title>the clean component of the mixture the flag was fitted '
            "with (noise_probability = 1 - its posterior)</title></polyline>"
        )
    cut = threshold(scores)
    if cut is not None:
        x = x0 + cut * (x1 - x0)
        body.append(
            f'<line class="threshold" x1="{x:.1f}" y1="{PAD_T}" x2="{x:.1f}" y2="{y0}" '
            f'stroke="{INK}" stroke-dasharray="4 3" stroke-width="1.5">'
            f"<title>flag threshold {cut:.3f}</title></line>"
        )
    flagged_n = int(flags.sum())
    return _frame(
        f"Histogram of {len(values)} noise scores, {flagged_n} flagged"
        + (f", threshold {cut:.3f}" if cut is not None else ""),
        body,
    )


def curve(name: str, values: Sequence[float | None]) -> str:
    """One per-epoch series (loss, flagged, separation) as a line with points."""
    known = [(i, float(v)) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    top = max((v for _, v in known), default=1.0) or 1.0
    x0, y0, x1 = PAD_L, HEIGHT - PAD_B, WIDTH - PAD_R
    span = max(len(values) - 1, 1)
    ticks = [(0.0, "1"), (1.0, str(len(values)))] if len(values) > 1 else [(0.0, "1")]
    body = _axes("epoch", name, top, ticks)
    points = [(x0 + i / span * (x1 - x0), y0 - max(v, 0) / top * (y0 - PAD_T)) for i, v in known]
    if points:
        body.append(
            f'<polyline class="series" points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in points)}"'
            f' fill="none" stroke="{CURVE}" stroke-width="2"/>'
        )
        body += [
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{CURVE}"><title>epoch {i + 1}: '
            f"{_num(v)}</title></circle>"
            for (x, y), (i, v) in zip(points, known, strict=True)
        ]
    return _frame(f"{name} per epoch over {len(values)} epochs", body)
