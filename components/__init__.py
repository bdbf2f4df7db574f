"""Streamlit building blocks shared by the app's pages (the `segloop` package never imports Streamlit)."""
