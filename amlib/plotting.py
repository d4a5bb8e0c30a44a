"""One figure style for the whole book, and the one function every figure is saved through.

Conventions of the book (every chapter follows them; chapters 08-10, 12 and 13 show them in use):

**Figures.**  One figure per code cell, drawn for a 784 px content column: at most
``PAGE_WIDTH`` inches wide (``figure.dpi`` 110, so about 770 px: nothing is shrunk), panels
stacked one per row when a row of them would make labels smaller than the text
(:func:`page_figure`), legends beside or below the data (``legend_below``), no figure numbers
drawn inside the plot (the book numbers figures itself; a title may say "the paper's Figure 5").
The figure is saved with ``save_figure(fig, "fig-<topic>", ...)``: the files ``fig-<topic>.png``,
``.pdf`` and ``.json`` (provenance) are named after the figure's label.  The cell carries the
caption and the label in its metadata, so myst-nb renders a numbered ``<figure>`` with a
``<figcaption>``::

    "metadata": {"mystnb": {"figure": {"caption": "What to see, not only what is plotted.",
                                       "name": "fig-<topic>"}}}

Prose cites it with a ``numref`` role on ``fig-<topic>`` ("Fig. 9"; Sphinx numbers figures
through the whole book).  The markdown cell right after the figure links its files (the files exist once
the notebook has run, which the book build does before it resolves the links);
:func:`figure_files` writes that line::

    Files: {download}`PNG </book/figures/fig-<topic>.png>` · {download}`PDF <...pdf>` ·
    {download}`provenance (JSON) <...json>`

**Tables.**  ``amlib.tables.show_table(df, "tab-<topic>", caption=...)``: formatted numbers,
p-values as ``3e-8``, ✓/✗ for booleans, no index column, one small table per data set or
question (split wide ones); it writes the full table to ``book/figures/tab-<topic>.csv``, linked
with :func:`table_files` the same way.

**Equations** the prose refers to are ``{math}`` blocks with ``:label: eq-<topic>``, cited with
the ``eq`` role on ``eq-<topic>``, with "the paper's eq. N" beside ours.  Display equations wider than
the column are broken with ``aligned``.  A line inside inline math must never start with ``+``,
``-`` or ``*`` (Markdown reads it as a list item): break the line before the operator's left
operand instead.

**Cells.**  Tags: ``hide-input`` on set-up (imports, configuration), ``remove-input`` on cells that
only assert (they still run under nbval and in the build), ``hide-output`` on long logs.  No
warning text or machine path in an output.

**Course furniture.**  The chapter's one or two findings in an ``{admonition}`` (class ``tip``
for "Key result", ``note`` for caveats); a theorem in ``{prf:theorem}`` with ``{prf:proof}``;
every chapter ends with ``## Exercises``: ``{exercise}`` blocks (a derivation to complete, a
parameter to change and predict, a small attack to run), each followed by its ``{solution}``
with ``:class: dropdown`` (hidden until the reader opens it).
"""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

from .paths import figure_dir
from .provenance import provenance

__all__ = ["PAGE_WIDTH", "set_style", "page_figure", "legend_below", "save_figure", "figure_dir",
           "figure_files", "table_files"]

#: Width in inches of a figure that fills the book's content column (784 px) at ``figure.dpi``.
PAGE_WIDTH = 7.0
#: Where the book's pages link figure and table files from (relative to the book's root).
BOOK_FIGURE_PATH = "/book/figures"


def set_style() -> None:
    """The book's seaborn theme (white grid, colour-blind palette, readable font sizes)."""
    import seaborn as sns

    sns.set_theme(context="notebook", style="whitegrid", palette="colorblind")
    matplotlib.rcParams.update({"figure.dpi": 110, "savefig.dpi": 200, "savefig.bbox": "tight",
                                "legend.fontsize": 10, "axes.titlesize": 12})


def page_figure(nrows: int = 1, ncols: int = 1, *, height: float = 3.4, width: float = PAGE_WIDTH,
                **kwargs):
    """``plt.subplots`` sized for the page: ``width`` inches wide, ``height`` inches per row,
    constrained layout.  Prefer ``ncols=1`` with several rows over panels side by side."""
    import matplotlib.pyplot as plt

    if nrows < 1 or ncols < 1:
        raise ValueError(f"page_figure needs nrows, ncols >= 1, got {nrows}, {ncols}")
    if width > PAGE_WIDTH:
        raise ValueError(f"width {width} in exceeds the page ({PAGE_WIDTH} in); stack panels instead")
    kwargs.setdefault("layout", "constrained")
    return plt.subplots(nrows, ncols, figsize=(width, height * nrows), **kwargs)


def legend_below(ax_or_fig, handles=None, labels=None, *, ncol: int = 2, **kwargs):
    """A legend below the axes (or figure), off the data."""
    target = ax_or_fig
    if handles is None:
        handles, labels = (target.get_legend_handles_labels() if hasattr(target, "get_legend_handles_labels")
                           else target.axes[0].get_legend_handles_labels())
    kwargs.setdefault("frameon", False)
    if hasattr(target, "transAxes"):
        return target.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.18),
                             ncol=ncol, **kwargs)
    return target.legend(handles, labels, loc="outside lower center", ncol=ncol, **kwargs)


def save_figure(fig, name: str, *, experiment: str, profile: str, seed: int | None,
                config: dict | None = None, results: dict | None = None) -> Path:
    """Write ``name``.png (for the book) and ``name``.pdf (for papers) plus ``name``.json.

    ``name`` is the figure's label in the book (``fig-<topic>``), so the files a reader downloads
    carry the name the text cites.  The JSON sidecar holds the provenance block (experiment,
    profile, seed, config, package versions, git commit), so a cited figure can be regenerated.
    A figure drawn from committed results passes their provenance as ``results``: the sidecar
    then also records the command, commit and configuration that produced the numbers, not only
    the commit that drew them.  Returns the PNG's path.
    """
    folder = figure_dir()
    folder.mkdir(parents=True, exist_ok=True)
    png = folder / f"{name}.png"
    fig.savefig(png)
    fig.savefig(folder / f"{name}.pdf")
    extra = {"figure": name}
    if results is not None:
        extra["results_provenance"] = results
    sidecar = provenance(experiment, profile, seed, config, **extra)
    (folder / f"{name}.json").write_text(json.dumps(sidecar, indent=2, default=str) + "\n")
    return png


def figure_files(label: str) -> str:
    """The MyST line that links a figure's PNG, PDF and provenance sidecar (see the module
    docstring); put it in the markdown cell under the figure."""
    base = f"{BOOK_FIGURE_PATH}/{label}"
    return (f"Files: {{download}}`PNG <{base}.png>` · {{download}}`PDF <{base}.pdf>` · "
            f"{{download}}`provenance (JSON) <{base}.json>`")


def table_files(label: str) -> str:
    """The MyST line that links a table's full CSV (written by ``amlib.tables.show_table``)."""
    return f"Full table: {{download}}`CSV <{BOOK_FIGURE_PATH}/{label}.csv>`"
