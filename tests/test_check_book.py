"""The browser check's file-level checks (no browser needed): failed executions and pages that
lost their outputs or figures are reported under their page."""
import importlib.util
import json
from pathlib import Path

import pytest

SPEC = importlib.util.spec_from_file_location("check_book", Path(__file__).parents[1] / ".ci" / "check_book.py")
check_book = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(check_book)


def notebook(path: Path, code: str) -> None:
    cells = [{"cell_type": "markdown", "metadata": {}, "source": ["# A chapter"]},
             {"cell_type": "code", "metadata": {}, "source": [code], "outputs": [], "execution_count": None}]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))


@pytest.fixture
def book(tmp_path):
    notebooks, html = tmp_path / "notebooks", tmp_path / "html" / "notebooks"
    notebooks.mkdir()
    html.mkdir(parents=True)
    notebook(notebooks / "01_ran.ipynb", "plt.show()")
    notebook(notebooks / "02_failed.ipynb", "print(1)")
    notebook(notebooks / "03_no_figure.ipynb", "plt.show()")
    notebook(notebooks / "04_not_in_toc.ipynb", "plt.show()")
    # the theme's script names the class on every page; only a real output div counts
    script = '<script>_selector_output = ".output, .cell_output"</script>'
    (html / "01_ran.html").write_text(script + '<div class="cell_output docutils container"><img src="a.png"></div>')
    (html / "02_failed.html").write_text(script + "<p>no outputs</p>")
    (html / "03_no_figure.html").write_text(script + '<div class="cell_output docutils container">text</div>')
    return tmp_path


def test_pages_without_outputs_or_figures_are_reported(book):
    problems = check_book.notebook_pages(book / "html", book / "notebooks")
    assert len(problems) == 2
    assert problems[0].startswith("notebooks/02_failed.html: no cell output")
    assert problems[1].startswith("notebooks/03_no_figure.html: the notebook draws a figure")


def test_error_logs_are_reported(book):
    reports = book / "html" / "reports"
    reports.mkdir()
    (reports / "02_failed.err.log").write_text("Traceback")
    assert check_book.execution_failures(book / "html") == ["notebook execution failed: 02_failed.err.log"]
