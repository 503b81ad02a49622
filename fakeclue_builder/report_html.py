"""The report's HTML: one self-contained page (inline CSS, images as data URIs, no scripts, every text escaped)."""

from __future__ import annotations

import html
import time
from collections import Counter
from pathlib import Path

from fakeclue_builder.records import CATEGORIES, REAL

SECTIONS = (("counts", "Counts"), ("sources", "Sources and generators"), ("properties", "Image properties"),
            ("captions", "Captions"), ("annotators", "Annotators"), ("dropped", "Dropped rows"), ("gallery", "Gallery"))
LABELS = (REAL, 1 - REAL)
MAX_DETAIL = 300

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:1rem 2rem;
color:#212529;background:#fff;line-height:1.45}
h1{margin-bottom:.2rem}h2{border-bottom:2px solid #dee2e6;padding-bottom:.2rem;margin-top:2.2rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}th,td{border:1px solid #dee2e6;padding:.25rem .55rem;
text-align:left;vertical-align:top}th{background:#f1f3f5}td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.total td{font-weight:600;background:#f8f9fa}.muted{color:#868e96}.note{background:#e7f5ff;border-left:4px solid
#1c7ed6;padding:.5rem .8rem;margin:.6rem 0}.warning{background:#fff4e6;border:2px solid #e8590c;border-radius:6px;
padding:.6rem .9rem;margin:.6rem 0}.warning strong{color:#d9480f}nav.toc{background:#f8f9fa;padding:.4rem 1rem;
border-radius:6px}nav.toc ol{margin:.3rem 0;columns:2}img.plot{max-width:100%;display:block;margin:.5rem 0}
.plots{display:flex;flex-wrap:wrap;gap:1rem}.plots img{max-width:560px}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:1rem}
.card{margin:0;border:1px solid #dee2e6;border-radius:8px;overflow:hidden;background:#fff;box-shadow:0 1px 2px #0001}
.card img,.card .noimg{width:100%;height:190px;object-fit:contain;background:#343a40;display:block;
image-rendering:pixelated}.card .noimg{color:#fff;display:flex;align-items:center;justify-content:center}
.card figcaption{padding:.5rem .6rem;font-size:.85rem}.card .caption{margin:.4rem 0;overflow-wrap:anywhere}
.card dl{margin:0;display:grid;grid-template-columns:auto 1fr;gap:0 .5rem;font-size:.78rem;color:#495057}
.card dt{font-weight:600}.card dd{margin:0;overflow-wrap:anywhere}
.badge{display:inline-block;border-radius:4px;padding:0 .4rem;color:#fff;font-weight:600;font-size:.8rem}
.badge.real{background:#2b8a3e}.badge.fake{background:#c92a2a}.badge.split{background:#495057}
code{overflow-wrap:anywhere}
"""


def esc(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def fmt_num(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if value % 1 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def table(headers: list[str], rows: list[list], total: list | None = None) -> str:
    """Cells are escaped; numbers are right-aligned."""

    def cell(v) -> str:
        return f'<td class="n">{esc(fmt_num(v))}</td>' if isinstance(v, (int, float)) and not isinstance(v, bool) \
            else f"<td>{esc(v)}</td>"

    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(cell(v) for v in r) + "</tr>" for r in rows)
    if total:
        body += '<tr class="total">' + "".join(cell(v) for v in total) + "</tr>"
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def img(uri: str, alt: str, cls: str = "plot") -> str:
    return f'<img class="{cls}" src="{uri}" alt="{esc(alt)}">'


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def ordered_cates(cates) -> list[str]:
    cates = set(cates)
    return [c for c in CATEGORIES if c in cates] + sorted(cates - set(CATEGORIES))


def quantiles(counter: Counter) -> dict:
    """min / median / max of a value -> count histogram."""
    n = sum(counter.values())
    seen, median = 0, None
    for value in sorted(counter):
        seen += counter[value]
        if median is None and seen >= (n + 1) / 2:
            median = value
    return {"n": n, "min": min(counter), "median": median, "max": max(counter)} if n else {"n": 0}


# ---------------------------------------------------------------------------------------------- page


def render(run_dir: Path, stages, has_split: bool, rows, shortcuts, dropped) -> str:
    from fakeclue_builder import report_sections as s

    stats = {st.name: st.stats for st in stages if st.stats}
    body = [
        s.counts(rows, has_split, stats.get("export")),
        s.sources(rows),
        s.properties(rows, shortcuts),
        s.captions(rows, (stats.get("aggregate") or {}).get("extra", {}).get("quality")),
        s.annotators(rows, (stats.get("annotate") or {}).get("extra"), stats.get("aggregate")),
        s.dropped_rows(stages, dropped, rows),
        s.gallery(rows, run_dir),
    ]
    sections = "".join(f'<section id="{sid}"><h2>{esc(title)}</h2>{content}</section>'
                       for (sid, title), content in zip(SECTIONS, body))
    toc = "".join(f'<li><a href="#{sid}">{esc(title)}</a></li>' for sid, title in SECTIONS)
    generated = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    source = (f"Rows from the <code>{esc(rows.stage)}</code> stage" + (" (exported rows only)" if has_split else "")
              if rows.stage else "No finished row stage yet")
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
        f'content="width=device-width,initial-scale=1"><title>FakeClue build report: {esc(run_dir.name)}</title>'
        f"<style>{CSS}</style></head><body><header><h1>FakeClue build report</h1>"
        f'<p class="muted">Run directory <code>{esc(run_dir)}</code>, generated {generated}. {source}.</p></header>'
        f'<nav class="toc"><strong>Contents</strong><ol><li><a href="#stages">Pipeline stages</a></li>{toc}</ol></nav>'
        f'<section id="stages"><h2>Pipeline stages</h2>{stage_table(stages)}</section>{sections}</body></html>\n'
    )


def stage_table(stages) -> str:
    rows = []
    for st in stages:
        s = st.stats or {}
        timings = s.get("timings", {})
        seconds = timings.get("shard_seconds_total", timings.get("seconds"))
        rows.append(f'<tr data-stage="{esc(st.name)}"><td>{esc(st.name)}</td><td>{esc(st.state)}</td>'
                    + "".join(f'<td class="n" data-{k}="{esc(s.get(k, ""))}">{esc(fmt_num(s.get(k)))}</td>'
                              for k in ("in", "kept", "dropped"))
                    + f'<td class="n">{esc(fmt_num(seconds))}</td></tr>')
    head = "".join(f"<th>{h}</th>" for h in ("stage", "state", "in", "kept", "dropped", "seconds"))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
