"""Class board: for a dataset, everyone's finished runs ranked by test accuracy (the way a teacher runs
"who can get LeNet5 past 60% on CIFAR-10"); opening a run there is read-only. Admins also get the
teacher view: per-user usage (runs, device hours, storage) and quotas.

Names on the board are shown to admins only, unless CNNVIZ_BOARD_NAMES=1; your own runs say "you".
"""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st
from streamlit.errors import StreamlitAPIException

from cnnviz import plots
from cnnviz.runs import access, list_runs, read_run, runs_root, snapshot
from cnnviz.runs.quotas import QUOTA_FIELDS, Limits, quotas, set_quota
from cnnviz.runs.usage import board, board_datasets, names_on_board, usage
from cnnviz.train import TrainConfig, evaluate
from cnnviz.users import User, display_name, known
from ui import auth
from ui.layout import error_line, page_header

ALL_MODELS = "all models"
QUOTA_LABELS = {"max_queued": "Runs queued or training", "max_running": "Runs training at once",
                "max_epochs": "Epochs per run", "max_storage_mb": "Storage (MB)"}


def who(owner: str | None, user: User, people: dict[str, User]) -> str:
    """How a run's owner is shown to `user`: 'you', a name (admins, or CNNVIZ_BOARD_NAMES=1), else a
    number that is the same for one person on this page."""
    if owner == user.id:
        return "you"
    if user.is_admin or names_on_board():
        return display_name(owner, people)
    order = st.session_state.setdefault("class_anon", {})
    return f"student {order.setdefault(owner or '', len(order) + 1)}"


@st.cache_data(show_spinner=False, max_entries=8)
def evaluation(run_path: str, mtime: float):
    return evaluate.evaluate_run(read_run(Path(run_path)))


def train_this(config: dict) -> None:
    """Copy a run's settings into the Train page's form and open it."""
    fields = {f.name for f in TrainConfig.settings()}
    for k, v in config.items():
        if k in fields:
            st.session_state[f"train_{k}"] = 0 if v is None and k.startswith("limit_") else v
    st.session_state["train_preset"] = "custom"
    try:
        st.switch_page("pages/training.py")
    except StreamlitAPIException:  # this page run on its own, outside the app's navigation
        st.success("The Train page's form now holds these settings: open it from the menu.")


def read_only_view(row, user: User, people: dict[str, User]) -> None:
    """One board run: curves, final numbers, config, the confusion matrix; no stop/delete/download."""
    snap = snapshot(row.run_dir)
    owner = who(row.owner, user, people)
    mine = access.may_manage(user, row.run_dir, row.owner)
    st.markdown(f"##### #{row.rank} · `{row.run_id}` · {owner}")
    st.caption(("Yours: stop, resume, delete or download it on the Train page. " if row.owner == user.id else
                "Someone else's run: as a teacher you manage it on the Train page. " if mine else
                "Read-only: someone else's run. You can look at it and train the same settings yourself. ")
               + (f"{row.model} on {row.dataset}, {row.epochs} epochs, test accuracy {100 * row.test_acc:.2f}%."))
    c1, c2 = st.columns(2)
    fig = plots.accuracy_figure(snap.epochs or [])
    fig.update_layout(height=300)
    c1.plotly_chart(fig, width="stretch", key="class_acc")
    last = snap.last_epoch
    c1.caption(f"Share of images classified correctly after each of the {len(snap.epochs or [])} epochs (train "
               f"and test); last: train {100 * (last.get('train_acc') or 0):.1f}%, test "
               f"{100 * (last.get('test_acc') or 0):.1f}%.")
    fig = plots.loss_figure(snap.steps or [])
    fig.update_layout(height=300)
    c2.plotly_chart(fig, width="stretch", key="class_loss")
    c2.caption(f"Training loss per logged step (faint) and its moving average; {len(snap.steps or [])} of "
               f"{snap.steps_logged} steps drawn.")
    b1, b2, _ = st.columns([1, 1, 2])
    if b1.button("Train this config myself", key="class_train_this", icon=":material/content_copy:",
                 type="primary", help="Fills the Train page's form with these settings (your run, your queue turn)."):
        train_this(snap.config)
    show_cm = b2.toggle("Confusion matrix", key="class_cm",
                        help="Evaluates the run's last weights on its test images (a few seconds).")
    with st.popover("Config (JSON)"):
        st.code(json.dumps(snap.config, indent=2), language="json")
    if show_cm and snap.last_checkpoint is not None:
        try:
            with st.spinner("Evaluating on the test images…"):
                ev = evaluation(str(row.run_dir), snap.last_checkpoint.stat().st_mtime)
        except (ValueError, OSError, RuntimeError) as exc:
            error_line("Can't evaluate this run", exc)
            return
        cm = evaluate.confusion_matrix(ev.labels, ev.preds, len(ev.classes))
        st.plotly_chart(plots.confusion_figure(cm, ev.classes), width="stretch", key="class_cm_fig")
        worst = evaluate.top_confusions(cm, 3)
        st.caption(f"Rows: true class, columns: predicted, on {len(ev.labels):,} test images "
                   f"({100 * ev.accuracy:.2f}% right). Most frequent confusions: "
                   + ("; ".join(f"{ev.classes[t]} → {ev.classes[p]} ({n})" for t, p, n in worst) or "none") + ".")
    elif not mine:
        st.caption("No download here: weights and scripts of a run go only to its owner and the teachers.")


def board_tab(runs: list, user: User, people: dict[str, User]) -> None:
    datasets = board_datasets(runs)
    if not datasets:
        st.info("No finished run yet: the board fills as runs finish.", icon=":material/leaderboard:")
        return
    c1, c2, _ = st.columns([1, 1, 2])
    ds = c1.selectbox("Dataset", datasets, key="class_dataset")
    models_here = sorted({r.config.get("model") for r in runs if r.config.get("dataset") == ds} - {None})
    model = c2.selectbox("Model", [ALL_MODELS] + models_here, key="class_model")
    rows = board(runs, ds, None if model == ALL_MODELS else model)
    if not rows:
        st.info(f"No finished {model} run on {ds} yet.", icon=":material/info:")
        return
    table = [{"rank": r.rank, "who": who(r.owner, user, people), "model": r.model, "epochs": r.epochs,
              "test acc %": round(100 * r.test_acc, 2),
              "best %": None if r.best_acc is None else round(100 * r.best_acc, 2),
              **{k: (str(v)[:24] if k == "augment" else v) for k, v in r.settings.items()}, "run": r.run_id}
             for r in rows]
    st.dataframe(table, hide_index=True, key="class_table", width="stretch")
    best = rows[0]
    st.caption(f"{len(rows)} finished run(s) on {ds}{'' if model == ALL_MODELS else f' with {model}'} from "
               f"{len({r.owner for r in rows})} people, ranked by final test accuracy (ties: fewer epochs first). "
               f"Best: {100 * best.test_acc:.2f}% ({best.model}, {best.epochs} epochs, {who(best.owner, user, people)})."
               + ("" if user.is_admin or names_on_board() else " Names are shown to teachers only."))
    pick = st.selectbox("Open a run (read-only)", [r.run_id for r in rows], key="class_pick",
                        format_func=lambda rid: next(f"#{r.rank} · {100 * r.test_acc:.2f}% · {r.model} · "
                                                     f"{who(r.owner, user, people)}" for r in rows if r.run_id == rid))
    read_only_view(next(r for r in rows if r.run_id == pick), user, people)


def teacher_tab(runs: list, user: User, people: dict[str, User]) -> None:
    """Per-user usage and quotas (admins only; the backend refuses others too)."""
    access.require_admin(user, "see the teacher view")
    q = quotas()
    env = Limits.from_env()
    rows = []
    for u in usage(runs):
        rows.append({"person": display_name(u.owner, people), "e-mail": people[u.owner].email if u.owner in people
                     else "", "runs": u.runs, "queued or training": u.live, "finished": u.finished,
                     "GPU hours": round(u.gpu_hours, 2), "CPU hours": round(u.cpu_hours, 2),
                     "storage MB": round(u.storage_bytes / 2**20, 1),
                     **{QUOTA_LABELS[k]: q.get(u.owner or "", {}).get(k, getattr(env, k)) for k in QUOTA_FIELDS}})
    st.dataframe(rows, hide_index=True, key="class_usage", width="stretch")
    st.caption(f"{len(rows)} owner(s), {sum(r['runs'] for r in rows)} runs. Device hours are training time x "
               "processes (GPU: CUDA runs; CPU: the rest); storage is run folders plus kept uploads. Quota columns "
               "show each person's limit (0 = none): the server's default unless set below.")
    ids = sorted(people, key=lambda i: people[i].display.lower())
    if not ids:
        st.caption("Quotas can be set for people who have signed in here.")
        return
    st.markdown("##### Set a quota")
    with st.form("class_quota"):
        uid = st.selectbox("Person", ids, key="class_quota_user",
                           format_func=lambda i: f"{people[i].display} ({people[i].email or i})")
        cols = st.columns(len(QUOTA_FIELDS))
        values = {k: col.number_input(QUOTA_LABELS[k] + " (0 = none)", 0, 1_000_000,
                                      int(q.get(uid, {}).get(k, getattr(env, k))), key=f"class_quota_{k}")
                  for k, col in zip(QUOTA_FIELDS, cols)}
        c1, c2, _ = st.columns([1, 1, 3])
        save = c1.form_submit_button("Save quota", type="primary")
        clear = c2.form_submit_button("Back to the defaults")
    if save or clear:
        try:
            set_quota(uid, {k: (None if clear else int(v)) for k, v in values.items()})
        except ValueError as exc:
            error_line("Not saved", exc)
            return
        st.toast(f"Quota of {people[uid].display} " + ("cleared" if clear else "saved"))
        st.rerun()


def main() -> None:
    page_header("Class board", "Everyone's finished runs on a dataset, ranked by test accuracy, with the model, "
                "settings and epochs that got there. Open one to see its curves and confusion matrix, and train "
                "the same settings yourself.")
    user = auth.require_user()
    runs = list_runs()
    people = known(runs_root())
    if user.is_admin and auth.sign_in_configured():
        t_board, t_teacher = st.tabs(["Board", "Teacher view"])
        with t_board:
            board_tab(runs, user, people)
        with t_teacher:
            teacher_tab(runs, user, people)
    else:
        board_tab(runs, user, people)


main()
