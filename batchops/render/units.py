"""Human-readable quantities shared by the renderers and the CLI (pure)."""

from __future__ import annotations


def human_size(n: int) -> str:
    """Bytes in SI units, e.g. 3.8 kB, 212.0 MB."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{n} B"  # pragma: no cover - the loop always returns
