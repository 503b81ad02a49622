"""The report's sections, each `(facts) -> HTML` (see report_html.py for the page and the helpers)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from fakeclue_builder.records import label_name
from fakeclue_builder.report_html import (LABELS, MAX_DETAIL, esc, fmt_num, img, note, ordered_cates, quantiles,
                                          table)
from fakeclue_builder.report_plots import grouped_bars, histogram, single_bars, thumbnail_uri

SPLITS = ("train", "test")


def counts(rows, has_split: bool, export_stats: dict | None) -> str:
    if not rows.counts:
        return note("No finished row stage yet: run 'fakeclue-builder collect --run-dir DIR' first.")
    cates = ordered_cates(c for c, _, _ in rows.counts)
    columns = SPLITS if has_split else (None,)
    head = "".join(f"<th>{h}</th>" for h in ["cate", "label", *(SPLITS if has_split else ()), "total"])
    body, totals = [], Counter()
    for cate in cates:
        for label in LABELS:
            n = {split: rows.counts.get((cate, label, split), 0) for split in columns}
            if not sum(n.values()):
                continue
            key = f"{cate}/{label_name(label)}"
            cells = "".join(f'<td class="n" data-count="{esc(key)}/{split}">{n[split]:,}</td>' for split in SPLITS
                            if has_split)
            body.append(f'<tr><td>{esc(cate)}</td><td>{label_name(label)}</td>{cells}'
                        f'<td class="n" data-count="{esc(key)}/total">{sum(n.values()):,}</td></tr>')
            totals.update({k: v for k, v in n.items()})
    cells = "".join(f'<td class="n" data-count="all/{s}">{totals[s]:,}</td>' for s in SPLITS if has_split)
    body.append(f'<tr class="total"><td colspan="2">total</td>{cells}'
                f'<td class="n" data-count="all/total">{sum(totals.values()):,}</td></tr>')
    out = [note("No export yet: the split is unknown, so there is no train/test column. Run 'fakeclue-builder "
                "export --run-dir DIR' to split.") if not has_split else ""]
    out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")
    if has_split and export_stats:
        extra = export_stats.get("extra", {})
        leaks = extra.get("leakage", {})
        out.append(f"<p>Split: {fmt_num(extra.get('splits', {}).get('train'))} train / "
                   f"{fmt_num(extra.get('splits', {}).get('test'))} test rows in {fmt_num(extra.get('groups'))} "
                   f"groups; leakage: {fmt_num(leaks.get('groups_across'))} groups and "
                   f"{fmt_num(leaks.get('phash_pairs_across'))} near-duplicate pairs across the split.</p>")
    per_label = {label: [sum(v for (c, lab, _), v in rows.counts.items() if c == cate and lab == label)
                         for cate in cates] for label in LABELS}
    out.append(img(grouped_bars(cates, per_label, "images per category"), "images per category and label"))
    return "".join(out)


def sources(rows) -> str:
    if not rows.sources:
        return note("No rows yet.")
    names = sorted({s for s, _ in rows.sources})
    table_rows = [[s, rows.sources[(s, 1)], rows.sources[(s, 0)], rows.sources[(s, 1)] + rows.sources[(s, 0)]]
                  for s in names]
    total = ["total", *(sum(r[i] for r in table_rows) for i in (1, 2, 3))]
    n_fake = sum(rows.generators.values())
    gens = [[g, n, f"{100 * n / n_fake:.1f}%"] for g, n in rows.generators.most_common()]
    per_label = {label: [rows.sources[(s, label)] for s in names] for label in LABELS}
    return ("<h3>Sources</h3>" + table(["source", "real", "fake", "total"], table_rows, total)
            + "<h3>Generators (fake images)</h3>" + (table(["generator", "fake images", "share"], gens)
                                                     if gens else note("No fake images."))
            + '<div class="plots">' + img(grouped_bars(names, per_label, "images per source", horizontal=True),
                                          "images per source")
            + (img(single_bars(rows.generators, "fake images per generator"), "generators") if gens else "")
            + "</div>")


def _shortcut_box(sc) -> str:
    return (f'<div class="warning" data-shortcut="{esc(sc.feature)}"><strong>Shortcut warning: {esc(sc.feature)}'
            f"</strong> separates real from fake ({esc(sc.metric)} {sc.value:.2f} &ge; {sc.threshold}). A detector "
            "trained on this data can reach high accuracy from this property alone, without looking at the "
            "content; rebalance the sources or normalise it before training.</div>")


def properties(rows, shortcuts) -> str:
    out = [_shortcut_box(sc) for sc in shortcuts if sc.warn]
    verdict = {True: "separates", False: "ok"}
    out.append(table(["feature", "metric", "value", "warn at", "result"],
                     [[sc.feature, sc.metric, round(sc.value, 3), sc.threshold,
                       verdict[sc.warn] if sc.enough else "too few images"] for sc in shortcuts]))
    out.append('<p class="muted">Rules: format warns when the total variation distance between the real and the fake '
               "format distributions is &ge; 0.3; pixels, file size and JPEG quality warn when the best single "
               "threshold on the value classifies real vs fake with a balanced accuracy &ge; 0.8. Each needs at least "
               "5 images of each label. JPEG quality is estimated from the luminance quantisation table (nearest IJG "
               "quality); it is only defined for JPEG files.</p>")
    format_table, format_plot = _formats(rows.features["format"])
    numeric_table, numeric_plots = _numeric(rows.features)
    out.append("<h3>Format</h3>" + format_table + "<h3>Size and JPEG quality</h3>" + numeric_table)
    out.append('<div class="plots">' + format_plot + numeric_plots + "</div>")
    return "".join(out)


def _formats(per_label: dict) -> tuple[str, str]:
    counters = {lab: per_label.get(lab, Counter()) for lab in LABELS}
    formats = sorted({f for c in counters.values() for f in c})
    n = {lab: sum(c.values()) for lab, c in counters.items()}

    def share(lab: int, f: str) -> str:
        return f"{counters[lab][f]:,} ({100 * counters[lab][f] / n[lab]:.0f}%)" if n[lab] else "0"

    rows = [[f, *(share(lab, f) for lab in LABELS)] for f in formats]
    plot = img(grouped_bars(formats, {lab: [counters[lab][f] for f in formats] for lab in LABELS},
                            "format per label"), "format per label") if formats else ""
    return table(["format", "real", "fake"], rows), plot


def _numeric(features: dict) -> tuple[str, str]:
    quality_edges = [0.5 + 5 * i for i in range(21)]  # 1-5, 6-10, ..., 96-100
    summary, plots = [], []
    for name, unit, log_x, edges in (("pixels", "width x height", True, None), ("file size", "bytes", True, None),
                                     ("JPEG quality", "estimated IJG quality", False, quality_edges)):
        for lab in LABELS:
            q = quantiles(features[name].get(lab, Counter()))
            summary.append([name, label_name(lab), q["n"], q.get("min"), q.get("median"), q.get("max")])
        if features[name]:
            plots.append(img(histogram(features[name], f"{name} per label", unit, log_x, edges=edges),
                             f"{name} per label"))
    return table(["feature", "label", "images", "min", "median", "max"], summary), "".join(plots)


def captions(rows, quality: dict | None) -> str:
    if not quality:
        return note("Aggregate has not run: there are no captions yet. Run 'fakeclue-builder aggregate "
                    "--run-dir DIR'.")
    out = []
    alarm = quality.get("all", {}).get("templated_alarm", {})
    if alarm.get("alarm"):
        grams = "".join(f"<li><code>{esc(g['ngram'])}</code> in {g['captions']:,} captions</li>"
                        for g in alarm.get("ngrams", [])[:10])
        out.append(f'<div class="warning" data-alarm="templated"><strong>Templated captions:</strong> '
                   f"{alarm.get('n_templated', 0):,} word 8-grams each appear in &ge; {alarm.get('threshold')} "
                   f"captions (evidence part). Most frequent:<ul>{grams}</ul></div>")
    table_rows = []
    for group, g in quality.items():
        length, claims = g.get("length_words", {}), g.get("claims", {})
        table_rows.append([group, g.get("n"), length.get("min"), length.get("median"), length.get("mean"),
                           length.get("max"), g.get("distinct_1"), g.get("distinct_2"), claims.get("mean_support"),
                           claims.get("critical_share"), g.get("templated_alarm", {}).get("n_templated")])
    out.append(table(["group", "captions", "words min", "median", "mean", "max", "distinct-1", "distinct-2",
                      "mean claim support", "critical share", "templated 8-grams"], table_rows))
    out.append('<p class="muted">Distinct-n and 8-grams are computed on the evidence part (after "This is a '
               'real|fake image."); lengths on the whole caption, in words.</p>')
    if rows.caption_words:
        out.append(img(histogram(rows.caption_words, "caption length per label", "words"), "caption length"))
    return "".join(out)


def annotators(rows, annotate_extra: dict | None, aggregate_stats: dict | None) -> str:
    names = sorted(set(rows.annotators) | set(annotate_extra or {}))
    if not names:
        return note("Annotate has not run: no annotators yet.")
    table_rows = []
    for name in names:
        c, e = rows.annotators.get(name, Counter()), (annotate_extra or {}).get(name, {})
        models = ", ".join(k[len("model:"):].removesuffix("@None") for k in sorted(c) if k.startswith("model:"))
        failures = ", ".join(f"{k}: {v}" for k, v in sorted((e.get("failures_by_reason") or {}).items()))
        table_rows.append([name, models, c["answers"], c["ok"], c["claims supported"], e.get("cache_hits"),
                           e.get("images_per_s"), e.get("tokens_per_s"), failures or "–"])
    out = [table(["annotator", "model@revision", "answers", "ok", "claims supported", "cache hits", "images/s",
                  "tokens/s", "failures"], table_rows)]
    quality = ((aggregate_stats or {}).get("extra") or {}).get("quality") or {}
    pairs = sorted({p for g in quality.values() for p in g.get("agreement", {})})
    if pairs:
        out.append("<h3>Agreement</h3><p>Mean Jaccard similarity of the annotators' content words, per pair "
                   "(1 = same words, 0 = nothing in common).</p>")
        out.append(table(["group", *pairs], [[group, *(g.get("agreement", {}).get(p, {}).get("mean_jaccard")
                                                       for p in pairs)] for group, g in quality.items()]))
    return "".join(out)


def dropped_rows(stages, dropped: dict, rows) -> str:
    out = [table(["stage", "state", "dropped", "by reason"], [
        [st.name, st.state, (st.stats or {}).get("dropped", "–") if st.stats else "–",
         ", ".join(f"{k}: {v:,}" for k, v in sorted((st.stats or {}).get("dropped_by_reason", {}).items(),
                                                      key=lambda kv: -kv[1])) or "–"] for st in stages])]
    if rows.not_exported:
        out.append(note(f"{rows.not_exported:,} rows of {rows.stage} are not in the export (the export's reasons "
                        "are listed below); the other sections count exported rows only."))
    for st in stages:
        by_reason = (st.stats or {}).get("dropped_by_reason") or {}
        if not by_reason:
            continue
        out.append(f'<h3 id="dropped-{esc(st.name)}">{esc(st.name)}</h3>')
        for reason, n in sorted(by_reason.items(), key=lambda kv: -kv[1]):
            examples = dropped.get(st.name, {}).get(reason, [])
            out.append(f"<h4>{esc(reason)}: {n:,} rows</h4>")
            if examples:
                out.append(table(["source", "source path", "cate", "label", "detail"], [
                    [e.get("source"), e.get("source_path"), e.get("cate") or "–",
                     label_name(e["label"]) if e.get("label") is not None else "–",
                     (e.get("detail") or "–")[:MAX_DETAIL]] for e in examples]))
    return "".join(out)


def _card(item: dict, run_dir: Path) -> str:
    uri = thumbnail_uri(run_dir / item["blob"]) if item.get("blob") else None
    picture = img(uri, f"{item['cate']} {label_name(item['label'])}", "thumb") if uri else \
        '<div class="noimg">image unavailable</div>'
    lab = label_name(item["label"])
    split = f' <span class="badge split">{esc(item["split"])}</span>' if item.get("split") else ""
    prov = [("source", item["source"]), ("generator", item.get("generator") or "–"), ("path", item["source_path"]),
            ("image", f"{item.get('format') or '?'} {item.get('width') or '?'}x{item.get('height') or '?'}, "
                      f"{fmt_num(item.get('n_bytes'))} bytes" + (f", JPEG q≈{item['quality']}" if item.get("quality")
                                                                  else "")),
            ("prompt", item.get("prompt_id") or "–"), ("image_id", (item.get("image_id") or "")[:16])]
    dl = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in prov)
    supporters = ", ".join(item["supporters"]) or "–"
    return (f'<figure class="card {lab}" data-image-id="{esc(item.get("image_id"))}">{picture}<figcaption>'
            f'<span class="badge {lab}">{lab}</span>{split}'
            f'<p class="caption">{esc(item.get("caption") or "(no caption yet)")}</p>'
            f"<p><strong>Supported by:</strong> {esc(supporters)}</p><dl>{dl}</dl></figcaption></figure>")


def gallery(rows, run_dir: Path) -> str:
    cates = ordered_cates(c for c, _ in rows.gallery)
    if not cates:
        return note("No rows yet.")
    out = [f'<p class="muted">Up to {rows.gallery_k} images per category (real and fake alternating; the rows with '
           "the smallest image_id, so the same run always shows the same images).</p>"]
    for cate in cates:
        items = rows.gallery_items(cate)
        total = sum(v for (c, _, _), v in rows.counts.items() if c == cate)
        out.append(f'<h3 id="gallery-{esc(cate)}">{esc(cate)} <span class="muted">({len(items)} of {total:,})</span>'
                   f'</h3><div class="grid">{"".join(_card(i, run_dir) for i in items)}</div>')
    return "".join(out)
