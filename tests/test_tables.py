"""amlib.tables: numbers formatted for reading, the CSV keeps the unrounded table."""
import numpy as np
import pandas as pd
import pytest

from amlib.tables import format_value, show_table


@pytest.mark.parametrize("value, text", [
    (3.026999e-08, "3e−8"), (0.76, "0.76"), (12.345, "12.3"), (99.99, "100"), (1234.5, "1234"),
    (0.00123, "0.00123"), (1e7, "1e7"), (True, "✓"), (np.False_, "✗"), (5, "5"),
    (123456, "123,456"), (float("nan"), "–"), (-0.25, "−0.25"), ("text", "text")])
def test_format_value(value, text):
    assert format_value(value) == text


def test_format_value_rejects_zero_digits():
    with pytest.raises(ValueError, match="digits"):
        format_value(1.0, digits=0)


def test_show_table_writes_full_csv_and_hides_index(tmp_path, monkeypatch):
    monkeypatch.setenv("AMLIB_FIGURE_DIR", str(tmp_path))
    df = pd.DataFrame({"p": [3.026999e-08, 0.5], "ok": [True, False]},
                      index=pd.Index(["a", "b"], name="method"))
    html = show_table(df, "tab-x", caption="A caption").to_html()
    assert "3e−8" in html and "✓" in html and "A caption" in html
    assert "3.026999e-08" not in html
    back = pd.read_csv(tmp_path / "tab-x.csv", index_col="method")
    assert back.loc["a", "p"] == pytest.approx(3.026999e-08)


def test_show_table_unknown_format_column():
    with pytest.raises(KeyError, match="nope"):
        show_table(pd.DataFrame({"a": [1.0]}), formats={"nope": "{:.1f}"})
