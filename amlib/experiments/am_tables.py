"""The p-value results next to the paper's tables (chapter 6, "Manipulating p-values").

Presentation only: every number comes from a results record of
:mod:`amlib.experiments.am_pvalues` (``summary`` rows, trial records, ``features``) and from the
paper's values (:func:`amlib.experiments.am_pvalues.paper_values`).

- :func:`table4` — the paper's Table 4 hyper-parameters as a table.
- :func:`pvalue_text` — a p-value as the paper prints it, with ✓ above 0.05.
- :func:`side_by_side` — paper and ours per (modeler, attack) row and (data set, mechanism)
  column, the layout of the paper's Tables 1 and 6–9.
- :func:`l1_cells`, :func:`audit_cells` — Tables 1, 6, 7 (distance to θα) and 9 (audit score)
  merged with our summary, with the texts :func:`side_by_side` shows.
- :func:`coefficient_table` — Tables 10–12: every coefficient and p-value of one attack next to
  the complete-data fit θp and θα.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import pandas as pd

from .am_datasets import AM_TARGETS, MODELERS, TABLE4, fit_glm
from .am_pvalues import PROFILES, paper_values
from ..am.attack import ATTACKS
from ..data import load

__all__ = ["CELL_KEYS", "table4", "pvalue_text", "side_by_side", "l1_cells", "audit_cells",
           "coefficient_table"]

#: the columns that name one cell of the paper's tables
CELL_KEYS = ["dataset", "modeler", "attack", "mechanism"]


def table4() -> pd.DataFrame:
    """Table 4: epochs and the two λs (the paper's units) per data set and attack, and lr."""
    return pd.DataFrame([{"data set": d, "attack": a, "epochs": e, "λ (upper)": lu,
                          "λ (lower)": ll, "lr": PROFILES["paper"]["lr"]}
                         for (d, a), (e, lu, ll) in TABLE4.items()])


def pvalue_text(p: float) -> str:
    """``0``, three decimals, or one significant digit below 0.001; ✓ when above 0.05."""
    text = "0" if p == 0 else (f"{p:.3f}" if p >= 1e-3 else f"{p:.0e}")
    return text + (" ✓" if p > 0.05 else "")


def side_by_side(frame: pd.DataFrame, paper_col: str, ours_col: str,
                 fmt: Callable[[object], str]) -> pd.DataFrame:
    """Rows (modeler, attack), columns (data set, mechanism, paper/ours) of ``fmt``-ed values;
    ``–`` where a cell was not run."""
    frame = frame.copy()
    frame["paper"], frame["ours"] = frame[paper_col].map(fmt), frame[ours_col].map(fmt)
    wide = frame.pivot_table(index=["modeler", "attack"], columns=["dataset", "mechanism"],
                             values=["paper", "ours"], aggfunc="first")
    wide = wide.reorder_levels([1, 2, 0], axis=1)
    columns = [(d, m, s) for d in AM_TARGETS for m in ["BLAMM", "MCAR"] for s in ["paper", "ours"]
               if (d, m, s) in wide.columns]
    rows = [(m, a) for m in MODELERS for a in ATTACKS if (m, a) in wide.index]
    return wide.loc[rows, columns].fillna("–")


def l1_cells(summary: pd.DataFrame, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """Tables 1, 6 and 7 merged with ``summary``: ``paper_text``/``ours_text`` (mean ± sd, ✓
    where the mean p-value exceeds 0.05), ``normalised`` (the paper's metric is
    ‖θ̂ − θα‖₁/‖θα‖₁ rather than the raw distance) and ``ratio`` (ours / paper)."""
    paper = paper_values() if paper is None else paper
    l1 = paper[paper["table"].isin(["AM-1", "AM-6", "AM-7"])].merge(summary, on=CELL_KEYS)
    normalised = l1["metric"] == "l1_normalised"
    l1["normalised"] = normalised
    l1["paper_text"] = (l1["value"].map("{:.2f}".format) + " ± " + l1["sd"].map("{:.1f}".format)
                        + np.where(l1["check"] == 1, " ✓", ""))
    ours_value = np.where(normalised, l1["l1_normalised"], l1["l1"])
    ours_sd = np.where(normalised, l1["l1_normalised_sd"], l1["l1_sd"])
    l1["ours_text"] = ([f"{v:.2f} ± {s:.2f}" if n else f"{v:.1f} ± {s:.1f}"
                        for v, s, n in zip(ours_value, ours_sd, normalised)]
                       + np.where(l1["pvalue"] > 0.05, " ✓", ""))
    l1["ratio"] = ours_value / l1["value"]
    return l1


def audit_cells(summary: pd.DataFrame, paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """Table 9 merged with ``summary``: texts to three decimals and ``gap`` = ``|ours − paper|``."""
    paper = paper_values() if paper is None else paper
    audit = paper[paper["table"] == "AM-9"].merge(summary, on=CELL_KEYS)
    fmt3 = "{:.3f}".format
    audit["paper_text"], audit["ours_text"] = audit["value"].map(fmt3), audit["audit_score"].map(fmt3)
    audit["gap"] = (audit["audit_score"] - audit["value"]).abs()
    return audit


def coefficient_table(record: dict, dataset: str, modeler: str, attack: str) -> pd.DataFrame:
    """Tables 10–12 from a committed ``am-pvalues`` record: per feature the complete-data θp
    (refitted on the trial's split), θα, and the mean coefficient and p-value the ``modeler``
    gets from the ``attack``'s BLAMM and MCAR masks."""
    trials = record["results"]["trials"]
    rec = next((t for t in trials if t["params"]["dataset"] == dataset
                and t["params"]["attack"] == attack), None)
    if rec is None:
        raise KeyError(f"the record has no {attack!r} attack on {dataset!r}")
    data = load(dataset, seed=rec["params"]["seed"])
    complete = fit_glm(data.X("train"), data.y("train"), rec["params"]["family"])
    rows = pd.DataFrame(record["results"]["features"][dataset])
    rows = rows[(rows["modeler"] == modeler) & (rows["attack"] == attack)]
    wide = rows.pivot(index="feature", columns="mechanism", values=["coef", "pvalue"])
    table = pd.DataFrame({"θp": complete.params, "θα": pd.Series(rec["theta_alpha"]),
                          "θ̂ BLAMM": wide[("coef", "BLAMM")], "θ̂ MCAR": wide[("coef", "MCAR")],
                          "p (θp)": complete.pvalues, "p BLAMM": wide[("pvalue", "BLAMM")],
                          "p MCAR": wide[("pvalue", "MCAR")]})
    return table.loc[list(complete.params.index)]
