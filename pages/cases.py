"""Cases: every registered scan with its status, who touched it last, the model's agreement with the
correction, a review queue ordered by what to label next, and approval of corrected cases."""

from __future__ import annotations

from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from components import auth, session
from components.app_shell import ensure_app_shell
from components.scan_picker import keep_case_in_url
from components.store import dice_columns, fmt_time, get_store, label_names_for
from segloop import config
from segloop.errors import SegLoopError
from segloop.store.identity import Action
from segloop.store.label_versions import approve, status_from_versions
from segloop.store.review_queue import STRATEGIES, review_queue
from segloop.store.scan_links import short_id

SEGMENT_PAGE = "pages/segment.py"
VIEWER_PAGE = "pages/viewer.py"
STRATEGY_TITLES = {
    "uncertainty": "Uncertainty: least sure first",
    "random": "Random",
    "foreground-random": "Foreground-aware random",
}
QUEUE_LINKS = 10


def case_link(params: dict[str, str], label: str, page: str = SEGMENT_PAGE) -> None:
    """A link that opens a scan on a page, Segment by default; the scan becomes the session's current scan.
    `params` name it: ``{"case": name, "scan": short id}`` (`session.link_params`, `scan_params`)."""
    icon = ":material/brush:" if page == SEGMENT_PAGE else ":material/view_in_ar:"
    try:
        st.page_link(page, label=label, query_params=params, icon=icon)
    except Exception:  # noqa: BLE001 - page not registered (single-page run, or not written yet)
        st.markdown(f"[{label}]({page.removeprefix('pages/').removesuffix('.py')}?{urlencode(params)})")


def scan_params(scan) -> dict[str, str]:
    """The link parameters of a workspace scan (a ScanRecord): its name, and its short id when it has one."""
    sid = short_id(scan.sha256)
    return {session.CASE_PARAM: scan.name, **({session.SCAN_PARAM: sid} if sid else {})}


ensure_app_shell()
keep_case_in_url()
st.title("Cases")
if flash := st.session_state.pop("cases_flash", None):
    st.success(flash)
store = get_store()
active = store.active_model()
names = label_names_for(active)
identity = auth.current_identity()

if identity.local:  # signed in, the name recorded is the identity's
    with st.sidebar:
        if "author" not in st.session_state:
            st.session_state["author"] = st.session_state.get(auth.AUTHOR_KEY, "")
        st.text_input("Your name", key="author", help="Recorded with every approval and correction you make.")
        st.session_state[auth.AUTHOR_KEY] = st.session_state["author"]

folder = config.data_dir()
scans = store.scans()
if folder is not None:
    col_a, col_b = st.columns([1, 3])
    with col_a:
        if st.button("Import data folder", key="import_folder", type="primary" if not scans else "secondary",
                     help="Registers every scan of the data folder by its path; nothing is copied."):
            try:
                with st.spinner("Registering scans…"):
                    added = store.import_folder(folder)
                st.toast(f"{len(added)} scans registered from {folder}")
                scans = store.scans()
            except SegLoopError as exc:
                st.error(str(exc))
    with col_b:
        registered_here = sum(1 for s in scans if s.source in ("imported", "datadir"))
        st.caption(f"Data folder: `{folder}` · {registered_here} scans registered from folders")
if not scans:
    st.info("No cases yet. Import the data folder above, or open a scan in the Viewer and save a label map.")
    st.stop()

by_id = {s.id: s for s in scans}
latest = store.latest_versions()
preds = {p.scan_id: p for p in store.predictions(active.id)} if active else {}
all_preds = {p.scan_id for p in store.predictions()}
model_versions = {m.id: m.version for m in store.models()}

rows = []
for s in scans:
    v = latest.get(s.id)
    status = status_from_versions([v] if v else [], s.id in all_preds)
    p = preds.get(s.id)
    if v is not None:
        who, when = v.author or ("model v%s" % model_versions.get(v.model_id, "?") if v.kind == "model" else "—"), v.created_at
    elif p is not None:
        who, when = f"model v{model_versions.get(p.model_id, '?')}", p.created_at
    else:
        who, when = "", None
    row = {"Case": s.name, "Id": s.id, "Status": status, "Last touched by": who, "When": fmt_time(when),
           "Label version": f"v{v.version} ({v.kind})" if v else "",
           "Changed voxels": v.changed_voxels if v and v.changed_voxels is not None else None}
    agreement = dice_columns(v.dice_vs_model if v and v.kind != "model" else None, names)
    row.update({k.replace("Dice", "Model agreement (Dice)"): val for k, val in agreement.items()})
    row["Open"] = f"segment?{urlencode(scan_params(s))}"
    rows.append(row)
table = pd.DataFrame(rows)
counts = table["Status"].value_counts()
st.caption(" · ".join(f"{counts.get(k, 0)} {k}" for k in ("new", "predicted", "corrected", "approved"))
           + (f" · active model: v{active.version}" if active else " · no active model"))

current = session.current()
if current is not None:
    col_t, col_v, col_s = st.columns([2, 1, 1])
    col_t.markdown(f"Current case: **{current.name}**")
    with col_v:
        case_link(session.link_params(), "Back to it in the Viewer", VIEWER_PAGE)
    with col_s:
        case_link(session.link_params(), "Correct it")

status_filter = st.multiselect("Show statuses", ["new", "predicted", "corrected", "approved"],
                               default=["new", "predicted", "corrected", "approved"], key="status_filter")
shown = table[table["Status"].isin(status_filter)]
picked = st.dataframe(
    shown, hide_index=True, key="cases_table", width="stretch", on_select="rerun", selection_mode="single-row",
    column_config={"Id": None,  # the scan a row is (selection), not shown
                   "Open": st.column_config.LinkColumn("Open", display_text="Segment ↗",
                                                       help="Open the case in the Segment page (new tab)")},
)
rows_picked = picked.selection.rows if picked is not None else []
if rows_picked and rows_picked[0] < len(shown):
    picked_scan = by_id[int(shown.iloc[rows_picked[0]]["Id"])]
    name = picked_scan.name
    col_t, col_v, col_s = st.columns([2, 1, 1])
    col_t.markdown(f"Selected: **{name}**")
    with col_v:
        case_link(scan_params(picked_scan), f"Open {name} in the Viewer", VIEWER_PAGE)
    with col_s:
        case_link(scan_params(picked_scan), f"Correct {name}")
else:
    st.caption("Select a row to open its case here, in the Viewer or the Segment page.")

st.subheader("Review queue: what to label next")
col_s, col_seed = st.columns([3, 1])
with col_s:
    strategy = st.selectbox("Order", list(STRATEGIES), format_func=STRATEGY_TITLES.get, key="queue_strategy",
                            help="Uncertainty puts the scans the active model is least sure about first; "
                                 "the random orders are the baselines (foreground-aware skips scans where the "
                                 "model found nothing). Approved scans are left out.")
with col_seed:
    seed = st.number_input("Seed", min_value=0, value=0, step=1, key="queue_seed",
                           disabled=strategy == "uncertainty")
queue = review_queue(store, strategy=strategy, seed=int(seed))
if not queue:
    st.caption("Nothing left to review.")
else:
    if strategy == "uncertainty" and all(q.mean_uncertainty is None for q in queue):
        st.caption("No predictions of the active model yet: segment scans on the Segment page to rank them by "
                   "uncertainty (until then the queue is alphabetical).")
    st.dataframe(pd.DataFrame([{"Rank": i + 1, "Case": q.name, "Status": q.status,
                                "Mean uncertainty": None if q.mean_uncertainty is None else round(q.mean_uncertainty, 4),
                                "Foreground voxels": q.foreground_voxels}
                               for i, q in enumerate(queue)]),
                 hide_index=True, key="queue_table", width="stretch", height=260)
    st.caption(f"Next {min(QUEUE_LINKS, len(queue))} to label:")
    cols = st.columns(min(5, len(queue)))
    for i, q in enumerate(queue[:QUEUE_LINKS]):
        with cols[i % len(cols)]:
            case_link(scan_params(by_id[q.scan_id]), f"{i + 1}. {q.name}")

st.subheader("Approve a corrected case")
corrected = {s.name: latest[s.id] for s in scans  # names are unique in the workspace
             if s.id in latest and latest[s.id].kind in ("correction", "reference")}
by_name = {s.name: s for s in scans}
if not corrected:
    st.caption("No corrected cases waiting for approval.")
else:
    col_c, col_b = st.columns([3, 1])
    with col_c:
        pick = st.selectbox("Corrected case", sorted(corrected), key="approve_case",
                            format_func=lambda n: f"{n} (v{corrected[n].version} by {corrected[n].author or '?'})")
        case_link(scan_params(by_name[pick]), f"Review {pick} first")
    with col_b:
        st.write("")
        may_approve = auth.allowed(Action.APPROVE, identity)
        if st.button("Approve", key="approve_btn", type="primary", disabled=not may_approve,
                     help=None if may_approve else auth.needs(Action.APPROVE)):
            try:
                v = approve(store, corrected[pick].id, author=auth.author_name(), identity=identity)
                st.session_state["cases_flash"] = f"{pick}: approved as label version v{v.version}."
                st.rerun()
            except SegLoopError as exc:
                st.error(str(exc))
