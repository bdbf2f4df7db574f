"""Plotly figures for training curves and model comparisons."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots


def training_curves(history: dict, names: dict[int, str] | None = None) -> go.Figure:
    """Loss per epoch (left) and validation Dice per label (right) of a run's history.json."""
    names = names or {}
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Training loss", "Validation Dice"))
    epochs, losses = history.get("epoch") or [], history.get("loss") or []
    fig.add_trace(go.Scatter(x=epochs, y=losses, mode="lines+markers", name="loss"), row=1, col=1)
    val_epochs, val = history.get("val_epoch") or [], history.get("val_dice") or []
    labels = sorted({str(k) for d in val for k in d}, key=lambda s: (len(s), s))
    for lab in labels:
        try:
            title = names.get(int(lab), lab)
        except ValueError:
            title = lab
        fig.add_trace(go.Scatter(x=val_epochs, y=[d.get(lab) for d in val], mode="lines+markers",
                                 name=f"Dice {title}"), row=1, col=2)
    fig.update_xaxes(title_text="epoch", row=1, col=1)
    fig.update_xaxes(title_text="epoch", row=1, col=2)
    fig.update_yaxes(range=[0, 1], row=1, col=2)
    fig.update_layout(height=320, margin=dict(l=40, r=20, t=40, b=40), legend=dict(orientation="h", y=-0.25))
    return fig


def dice_bars(rows: list[dict], names: dict[int, str] | None = None, title: str = "Validation Dice per label"
              ) -> go.Figure:
    """Grouped bars: one group per label, one bar per model. rows: [{"model": "v1", "dice": {"1": .8, ...}}]."""
    names = names or {}
    labels = sorted({str(k) for r in rows for k in (r.get("dice") or {})}, key=lambda s: (len(s), s))

    def lab_name(lab: str) -> str:
        try:
            return names.get(int(lab), lab)
        except ValueError:
            return lab

    fig = go.Figure()
    for r in rows:
        d = r.get("dice") or {}
        fig.add_trace(go.Bar(name=str(r["model"]), x=[lab_name(k) for k in labels],
                             y=[d.get(k) for k in labels],
                             text=[f"{d[k]:.3f}" if d.get(k) is not None else "" for k in labels],
                             textposition="outside"))
    fig.update_layout(barmode="group", title=title, yaxis=dict(range=[0, 1.05], title="Dice"), height=340,
                      margin=dict(l=40, r=20, t=50, b=40))
    return fig
