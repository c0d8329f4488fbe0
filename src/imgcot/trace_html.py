"""Write a search run's trace: `trace.json` (machine-readable) and `trace.html` (self-contained, for a browser).

trace.json schema (version 1); images are PNG files under `images/` relative to the folder, or null when not
written (images=False) or not recorded (run without record_previews):

    {
      "version": 1,
      "strategy": str, "n": int, "num_steps": int,
      "compute": {"generator_forwards": int, "verifier_calls": int, "wall_seconds": float},   # whole run
      "prompts": [
        {
          "prompt": str, "chosen": int, "image": path | null,                    # the chosen final image
          "compute": {"generator_forwards": int, "verifier_calls": int, "wall_seconds": float},
          "candidates": [
            {
              "index": int, "seed": int, "chosen": bool, "forwards": int,
              "pruned_at": int | null,        # step after which the path was truncated (PARM)
              "outcome": float | null,        # outcome score P(yes), when asked
              "final": path | null,           # the candidate's final image, when recorded
              "steps": [                      # one entry per decoded or judged step, in order
                {"step": int, "clarity": float | null, "potential": float | null, "value": float | null,
                 "kept": bool | null,         # PRM: this branch became the path
                 "preview": path | null}
              ]
            }
          ],
          "rounds": [                         # PARM++ only (absent for other strategies): round 0 is PARM's image
            {"round": int, "image": path | null, "forwards": int, "redrawn": int | null, "chosen": bool,
             "aligned": float | null,         # the reflector's P(aligned); null: not asked (the last image)
             "critique": str | null,          # the sentence built from the failed clauses
             "clauses": [{"kind": str, "obj": str, ...}]}   # reflection/clauses.py clause_dict
          ]
        }
      ]
    }

trace.html inlines every image as a base64 PNG (upscaled with CSS `image-rendering: pixelated`) and references
nothing outside itself.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

import numpy as np

from .core import Compute
from .fileio import png_bytes, save_png, write_text_atomic
from .search.result import CandidateTrace, Judgment, RoundTrace, SearchResult, total_compute

SCHEMA_VERSION = 1


def write_trace(results: SearchResult | list[SearchResult], folder: str | Path, images: bool = True) -> Path:
    """Write trace.json (+ images/ when `images`) and trace.html into `folder`; returns the HTML path."""
    results = [results] if isinstance(results, SearchResult) else list(results)
    if not results:
        raise ValueError("no search results to trace")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    doc = trace_dict(results, folder if images else None)
    write_text_atomic(folder / "trace.json", json.dumps(doc, indent=1) + "\n")
    write_text_atomic(folder / "trace.html", trace_html(results))
    return folder / "trace.html"


# --- trace.json ------------------------------------------------------------------------------------------------
def _compute(c: Compute) -> dict:
    return {"generator_forwards": c.generator_forwards, "verifier_calls": c.verifier_calls,
            "wall_seconds": round(c.wall_seconds, 4)}  # fmt: skip


def _image(image: np.ndarray | None, folder: Path | None, name: str) -> str | None:
    if image is None or folder is None:
        return None
    save_png(image, folder / "images" / name)
    return f"images/{name}"


def _steps(c: CandidateTrace) -> list[tuple[int, Judgment | None, np.ndarray | None]]:
    """(step, judgment, preview) for every step that was decoded (previews) or judged."""
    judged = {j.step: j for j in c.judgments}
    previews = dict(enumerate(c.previews or [], start=1))
    return [(s, judged.get(s), previews.get(s)) for s in sorted(judged.keys() | previews.keys())]


def _candidate(c: CandidateTrace, folder: Path | None, stem: str) -> dict:
    steps = []
    for s, j, preview in _steps(c):
        fields = {"clarity": None, "potential": None, "value": None, "kept": None}
        if j is not None:
            fields = {"clarity": j.clarity, "potential": j.potential, "value": j.value, "kept": j.kept}
        steps.append({"step": s, **fields, "preview": _image(preview, folder, f"{stem}_s{s:02d}.png")})
    return {"index": c.index, "seed": c.seed, "chosen": c.chosen, "forwards": c.forwards, "pruned_at": c.pruned_at,
            "outcome": c.outcome, "final": _image(c.final, folder, f"{stem}_final.png"), "steps": steps}  # fmt: skip


def _round(t: RoundTrace, folder: Path | None, stem: str) -> dict:
    return {"round": t.index, "image": _image(t.image, folder, f"{stem}_r{t.index}.png"), "forwards": t.forwards,
            "redrawn": t.redrawn, "aligned": t.aligned, "critique": t.critique, "clauses": t.clauses,
            "chosen": t.chosen}  # fmt: skip


def trace_dict(results: list[SearchResult], folder: Path | None = None) -> dict:
    """The trace.json document; images are written under `folder`/images when a folder is given."""
    first = results[0]
    prompts = []
    for p, r in enumerate(results):
        candidates = [_candidate(c, folder, f"p{p:04d}_c{c.index:03d}") for c in r.candidates]
        prompts.append({"prompt": r.prompt, "chosen": r.chosen, "image": _image(r.image, folder, f"p{p:04d}.png"),
                        "compute": _compute(r.compute), "candidates": candidates})  # fmt: skip
        if r.rounds is not None:
            prompts[-1]["rounds"] = [_round(t, folder, f"p{p:04d}") for t in r.rounds]
    return {"version": SCHEMA_VERSION, "strategy": first.strategy, "n": first.n, "num_steps": first.num_steps,
            "compute": _compute(total_compute(results)), "prompts": prompts}  # fmt: skip


# --- trace.html ------------------------------------------------------------------------------------------------
CSS = """
body { font: 13px system-ui, sans-serif; margin: 16px; color: #222; }
h1 { font-size: 18px; } h2 { font-size: 15px; margin-top: 28px; }
table { border-collapse: collapse; } td, th { padding: 4px; vertical-align: top; text-align: center; }
img { width: 72px; height: 72px; image-rendering: pixelated; display: block; margin: auto; }
tr.candidate td { border-top: 1px solid #ddd; }
tr.chosen td { background: #e3f6e3; } tr.chosen td.label { border-left: 4px solid #2a9d2a; }
td.label { text-align: left; white-space: nowrap; }
td.pruned { outline: 2px solid #c62828; } td.after { opacity: 0.3; }
td.kept { outline: 2px solid #1565c0; }
.j { font-size: 11px; color: #555; } .no { color: #c62828; } .yes { color: #2a7d2a; }
.mark { font-weight: bold; color: #c62828; } .keptmark { font-weight: bold; color: #1565c0; }
table.rounds td { border-top: 1px solid #ddd; max-width: 140px; }
.critique { font-size: 11px; color: #c62828; font-style: italic; }
"""


def _img_tag(image: np.ndarray | None, title: str) -> str:
    if image is None:
        return ""
    data = base64.b64encode(png_bytes(image)).decode("ascii")
    return f'<img alt="{html.escape(title)}" title="{html.escape(title)}" src="data:image/png;base64,{data}">'


def _prob(name: str, value: float | None) -> str:
    if value is None:
        return ""
    cls = "yes" if value >= 0.5 else "no"
    return f'<div class="j {cls}">{name} {value:.2f}</div>'


def _step_cell(c: CandidateTrace, step: int, judgment: Judgment | None, preview: np.ndarray | None) -> str:
    classes = []
    if c.pruned_at is not None and step == c.pruned_at:
        classes.append("pruned")
    elif c.pruned_at is not None and step > c.pruned_at:
        classes.append("after")
    body = _img_tag(preview, f"candidate {c.index}, step {step}")
    if judgment is not None:
        j = judgment
        body += _prob("clear", j.clarity) + _prob("potential", j.potential) + _prob("value", j.value)
        if judgment.kept:
            classes.append("kept")
            body += '<div class="keptmark">&#9733; kept</div>'
    if "pruned" in classes:  # a promising path pruned was over PARM's keep limit (search/parm.py)
        over = judgment is not None and judgment.potential is not None and judgment.potential >= 0.5
        body += f'<div class="mark">&#9986; pruned{" (over keep)" if over else ""}</div>'
    return f'<td class="{" ".join(classes)}">{body}</td>'


def _candidate_row(c: CandidateTrace, num_steps: int) -> str:
    by_step = {s: (j, preview) for s, j, preview in _steps(c)}
    label = f"#{c.index}<br><span class='j'>seed {c.seed}<br>{c.forwards} fwd</span>"
    if c.chosen:
        label += "<br><b>chosen</b>"
    cells = [f'<td class="label">{label}</td>']
    for s in range(1, num_steps + 1):
        judgment, preview = by_step.get(s, (None, None))
        cells.append(_step_cell(c, s, judgment, preview))
    final = _img_tag(c.final, f"candidate {c.index}, final") + _prob("outcome", c.outcome)
    cells.append(f'<td class="{"after" if c.pruned_at is not None and not c.chosen else ""}">{final}</td>')
    return f'<tr class="candidate{" chosen" if c.chosen else ""}">{"".join(cells)}</tr>'


def _rounds_table(r: SearchResult) -> str:
    """PARM++: one column per round, its image, the reflector's answer and the critique that drove the next."""
    if not r.rounds:
        return ""
    head = "".join(f"<th>round {t.index}{' (PARM)' if t.index == 0 else ''}{' &#10003;' if t.chosen else ''}</th>"
                   for t in r.rounds)  # fmt: skip
    cells = []
    for t in r.rounds:
        body = _img_tag(t.image, f"round {t.index}") + _prob("aligned", t.aligned)
        if t.index:
            body += f"<div class='j'>{t.redrawn} tokens redrawn, {t.forwards} fwd</div>"
        if t.critique is not None and (t.aligned is None or t.aligned < 0.5):
            body += f"<div class='critique'>{html.escape(t.critique)}</div>"
        cells.append(f"<td>{body}</td>")
    return f"<div class='j'>reflection and self-correction</div><table class='rounds'><tr>{head}</tr>" \
        f"<tr>{''.join(cells)}</tr></table>"  # fmt: skip


def _after_rounds(r: SearchResult) -> str:
    return "" if r.rounds is None else f", after {len(r.rounds) - 1} correction round(s)"


def _prompt_section(r: SearchResult, p: int) -> str:
    head = "".join(f"<th>step {s}</th>" for s in range(1, r.num_steps + 1))
    rows = "".join(_candidate_row(c, r.num_steps) for c in r.candidates)
    c = r.compute
    return (
        f"<h2>{p}. {html.escape(r.prompt)}</h2>"
        f"<div>chosen: candidate {r.chosen}{_after_rounds(r)} {_img_tag(r.image, 'chosen image')}</div>"
        f"<div class='j'>{c.generator_forwards} generator forward passes, {c.verifier_calls} verifier calls, "
        f"{sum(t.pruned_at is not None for t in r.candidates)} of {len(r.candidates)} candidates pruned</div>"
        f"<table><tr><th>candidate</th>{head}<th>final</th></tr>{rows}</table>" + _rounds_table(r)
    )


def trace_html(results: list[SearchResult]) -> str:
    """A self-contained page: header (strategy, N, compute), then per prompt one row per candidate."""
    first, total = results[0], total_compute(results)
    header = (
        f"<h1>imgcot search trace: {html.escape(first.strategy)}, N = {first.n}</h1>"
        f"<div>{len(results)} prompt(s), {first.num_steps} steps; compute: {total.generator_forwards} generator "
        f"forward passes, {total.verifier_calls} verifier calls, {total.wall_seconds:.2f} s</div>"
        "<div class='j'>Scores are probabilities of &quot;yes&quot;. Red outline: pruned after that step (greyed "
        "afterwards); blue: the branch kept (PRM); green row: the chosen candidate.</div>"
    )
    body = header + "".join(_prompt_section(r, p) for p, r in enumerate(results))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>imgcot trace</title>'
        f"<style>{CSS}</style></head><body>{body}</body></html>\n"
    )
