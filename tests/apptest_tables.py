"""Reading tables off pages in Streamlit's AppTest."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def table(at: AppTest, column: str):
    """The first dataframe on the page that has `column`, with a fresh 0..n-1 index."""
    for df in at.dataframe:
        if column in df.value.columns:
            return df.value.reset_index(drop=True)
    raise AssertionError(f"no table with a {column!r} column")
