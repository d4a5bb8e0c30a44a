"""Tables for reading: formatted numbers, ✓ marks, no index column, the full table as CSV.

``show_table(df, "tab-<topic>", caption=...)`` is how a chapter shows a table (conventions in
:mod:`amlib.plotting`).  Numbers get ``digits`` significant digits; very small or very large
ones are written like ``3e-8`` (no ``e-08`` padding); booleans become ✓ / ✗; text is left as it
is.  The CSV holds the unrounded table, so nothing is lost by formatting it for the page.
"""
from __future__ import annotations

import math
import numbers

import numpy as np
import pandas as pd

from .paths import figure_dir

__all__ = ["format_value", "show_table"]


def format_value(value, digits: int = 3) -> str:
    """``value`` for a reader: ``digits`` significant digits, ``3e-8`` for tiny or huge numbers,
    ✓/✗ for booleans, an en dash for missing values."""
    if digits < 1:
        raise ValueError(f"digits must be at least 1, got {digits}")
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, (bool, np.bool_)):
        return "✓" if value else "✗"
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}" if abs(int(value)) >= 10_000 else str(int(value))
    if isinstance(value, numbers.Real):
        x = float(value)
        if math.isinf(x):
            return "∞" if x > 0 else "−∞"
        if x == 0:
            return "0"
        if abs(x) < 1e-3 or abs(x) >= 1e6:
            mantissa, exponent = f"{x:.{max(digits - 3, 0)}e}".split("e")
            if "." in mantissa:
                mantissa = mantissa.rstrip("0").rstrip(".")
            return f"{mantissa}e{int(exponent)}".replace("-", "−")
        text = f"{x:.{digits}g}"
        if "e" in text:      # 'g' chose an exponent for a mid-sized number: write it out
            text = f"{x:.{max(digits - 1 - int(math.floor(math.log10(abs(x)))), 0)}f}"
        return text.replace("-", "−")
    return str(value)


def show_table(df: pd.DataFrame, label: str | None = None, *, caption: str | None = None,
               digits: int = 3, formats: dict | None = None, index: bool = False,
               full: pd.DataFrame | None = None):
    """A styled table for the page; with ``label`` also ``book/figures/<label>.csv``.

    ``formats`` maps a column to its own format (a format string such as ``"{:.1f}"`` or a
    function); other columns use :func:`format_value` with ``digits``.  ``index=True`` keeps the
    index as the first column (by default it becomes an ordinary column when it has a name and
    is dropped when it is the default range).  ``full`` is the table written to the CSV when the
    page shows only part of it (one of several small tables split from a wide one).
    """
    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"show_table needs a pandas DataFrame, got {type(df).__name__}")
    if label is not None:
        folder = figure_dir()
        folder.mkdir(parents=True, exist_ok=True)
        written = df if full is None else full
        written.to_csv(folder / f"{label}.csv", index=not isinstance(written.index, pd.RangeIndex))
    shown = df
    if not index and not isinstance(df.index, pd.RangeIndex):
        shown = df.reset_index()
    formats = dict(formats or {})
    unknown = set(formats) - set(shown.columns)
    if unknown:
        raise KeyError(f"formats names columns the table does not have: {sorted(map(str, unknown))}")
    styler = shown.style.format(lambda v: format_value(v, digits))
    for column, fmt in formats.items():
        styler = styler.format(fmt, subset=[column])
    styler = styler.hide(axis="index")
    numeric = [c for c in shown.columns if pd.api.types.is_numeric_dtype(shown[c])
               and not pd.api.types.is_bool_dtype(shown[c])]
    flags = [c for c in shown.columns if pd.api.types.is_bool_dtype(shown[c])]
    others = [c for c in shown.columns if c not in numeric and c not in flags]
    if flags:
        styler = styler.set_properties(subset=flags, **{"text-align": "center"})
    if numeric:
        styler = styler.set_properties(subset=numeric, **{"text-align": "right"})
    if others:
        styler = styler.set_properties(subset=others, **{"text-align": "left"})
    if caption:
        styler = styler.set_caption(caption)
    styler = styler.set_table_styles([
        {"selector": "caption", "props": "caption-side: top; text-align: left; font-weight: normal;"
                                         " padding-bottom: 0.3em;"},
        {"selector": "td", "props": "white-space: nowrap; padding: 0.15em 0.6em;"},
        {"selector": "th", "props": "text-align: center; padding: 0.15em 0.6em;"},
    ])
    return styler
