"""Results on disk: the JSON document, a Markdown summary, the plans, and SVG charts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import plot
from bench.reads import READS

NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
SHORT = {
    "timeline": "Timeline, latest 50",
    "inbox": "Inbox page",
    "conversation500": "Conversation, 500 msgs",
    "contact_phone": "Contact by phone",
    "contact_email": "Contact by e-mail",
    "contact_name": "Contact by name",
    "search_reference": "Search: reference",
    "search_word": "Search: common word",
}


def write(document: dict[str, Any], out_dir: Path) -> list[Path]:
    """Write ``{mode}.json``, ``{mode}.md``, ``{mode}-plans.md`` and the charts; their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    mode = document["mode"]
    paths = []
    path = out_dir / f"{mode}.json"
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False, default=str) + "\n")
    paths.append(path)
    if document["backends"]:
        path = out_dir / f"{mode}-latency.svg"
        path.write_text(latency_chart(document))
        paths.append(path)
    for backend, points in document.get("growth", {}).items():
        if len(points) > 1:
            path = out_dir / f"growth-{backend}.svg"
            path.write_text(growth_chart(backend, points))
            paths.append(path)
    path = out_dir / f"{mode}-plans.md"
    path.write_text(plans_markdown(document))
    paths.append(path)
    path = out_dir / f"{mode}.md"
    path.write_text(markdown(document, charts=[p.name for p in paths if p.suffix == ".svg"]))
    paths.append(path)
    return paths


def _ms(numbers: dict[str, Any]) -> str:
    return f"{numbers['p50_ms']:g} / {numbers['p99_ms']:g} / {numbers['max_ms']:g}"


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def markdown(document: dict[str, Any], *, charts: list[str]) -> str:
    """The summary tables."""
    backends = document["backends"]
    names = [NAMES[b] for b in backends]
    m = document["machine"]
    lines = [
        f"# Hilo benchmark: {document['mode']}",
        "",
        f"- Command: `{document['command']}`",
        f"- Started {document['started_at']}, took {document.get('seconds', 0):g} s",
        f"- Machine: {m['cpus']} × {m['cpu_model']}, {m['memory_gb']} GB RAM, Linux "
        f"{m['kernel']}, Python {m['python']}, SQLite {m['sqlite']}"
        + (f", {m['postgres']}" if "postgres" in m else ""),
        f"- Load average (1, 5, 15 min) at start {m['load_average_at_start']}, at end "
        f"{m.get('load_average_at_end')}: other work shared the machine when it was above ~0.5.",
        (
            f"- Data set: {document['size']['label']} "
            f"({document['size']['messages']:,} messages), seed {document['settings']['seed']}"
            if backends
            else f"- Data sets: {', '.join(next(iter(document['growth'].values()), {}))}, "
            f"seed {document['settings']['seed']}"
        ),
        "",
    ]
    if backends:
        lines += _ingest_table(document, names)
        lines += _reads_table(document, names)
    if document.get("growth"):
        lines += _growth_tables(document)
    lines += _profiles(document)
    for chart in charts:
        lines += [f"![{chart}]({chart})", ""]
    return "\n".join(lines)


def _ingest_table(document: dict[str, Any], names: list[str]) -> list[str]:
    backends = document["backends"]
    s = document["settings"]
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, fn: Any) -> None:
        rows.append((label, [fn(r) for r in backends.values()]))

    row("data set (messages)", lambda r: f"{r['dataset']['messages']:,}")
    row("durability", lambda r: ", ".join(f"{k}={v}" for k, v in r["durability"].items()))
    row("persisted msgs/s (acknowledged and processed)", lambda r: _fmt(_i(r)["persisted_per_s"]))
    row("acknowledgements/s", lambda r: _fmt(_i(r)["acks_per_s"]))
    row("request → ack p50 / p99 / max (ms)", lambda r: _ms(_i(r)["ack_latency"]))
    row("request → visible in API p50 / p99 / max (ms)", lambda r: _ms(_i(r)["visible_latency"]))
    row("server peak RSS (MB)", lambda r: _fmt(_i(r)["server_peak_rss_mb"]))
    row("server CPU per message (ms)", lambda r: _fmt(_i(r)["server_cpu_ms_per_message"]))
    row(
        "baseline: parse and 200, acks/s (RSS MB)",
        lambda r: (
            f"{r['ingest']['parse']['acks_per_s']:g} "
            f"({r['ingest']['parse']['server_peak_rss_mb']:g})"
        ),
    )
    row(
        "baseline: parse + durable raw insert, acks/s (RSS MB)",
        lambda r: (
            f"{r['ingest']['store']['acks_per_s']:g} "
            f"({r['ingest']['store']['server_peak_rss_mb']:g})"
        ),
    )
    row(
        "ratio persisted / parse baseline",
        lambda r: _fmt(r["ingest"]["ratios"]["persisted_vs_parse"]),
    )
    row(
        "ratio persisted / durable-insert baseline",
        lambda r: _fmt(r["ingest"]["ratios"]["persisted_vs_store"]),
    )
    row(
        "ledger: acknowledged ids / lost / duplicated",
        lambda r: (
            f"{r['verification']['acknowledged_ids']} / {r['verification']['lost']} / "
            f"{r['verification']['duplicated']}"
        ),
    )
    out = [
        "## Ingest",
        "",
        f"{s['ingest_requests']:,} signed webhooks (WhatsApp Cloud and Twilio SMS, "
        f"{int(s['redelivery_share'] * 100)} % redeliveries of earlier ones) over "
        f"{s['concurrency']} connections, after {s['warmup_requests']} warm-up deliveries. "
        "The ledger check covers every delivery of the run (warm-up, measured, background).",
        "",
        "| | " + " | ".join(names) + " |",
        "| --- |" + " --- |" * len(names),
    ]
    out += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    return [*out, ""]


def _i(result: dict[str, Any]) -> dict[str, Any]:
    hilo: dict[str, Any] = result["ingest"]["hilo"]
    return hilo


def _reads_table(document: dict[str, Any], names: list[str]) -> list[str]:
    backends = document["backends"]
    first = next(iter(backends.values()))["reads"]
    header = "| read | target p99 |"
    rule = "| --- | --- |"
    for name in names:
        header += f" {name} API p50 / p99 | {name} database p50 / p99 | ratio p50 / p99 |"
        rule += " --- | --- | --- |"
    out = [
        "## Agent reads under ingest",
        "",
        f"{first['readers']} concurrent readers for {first['seconds']:g} s while webhooks "
        f"arrive at {first['background_rate_per_s']:g}/s in the background (achieved: "
        + ", ".join(
            f"{NAMES[b]} {r['reads']['background_achieved_per_s']:g}/s" for b, r in backends.items()
        )
        + "). The database column runs the same SELECTs the API sent, on a plain driver "
        "connection, under the same background ingest. Milliseconds.",
        "",
        header,
        rule,
    ]
    for label, (title, target) in READS.items():
        cells = [title, f"{target:g}"]
        for result in backends.values():
            api = result["reads"]["api"][label]
            base = result["reads"]["database"][label]
            ratio = result["reads"]["ratios"][label]
            cells += [
                f"{api['p50_ms']:g} / {api['p99_ms']:g}",
                f"{base['p50_ms']:g} / {base['p99_ms']:g}",
                f"{_fmt(ratio['p50'])} / {_fmt(ratio['p99'])}",
            ]
        out.append("| " + " | ".join(cells) + " |")
    scans = []
    for backend, result in backends.items():
        for label, plan in result["reads"]["plans"].items():
            if plan["table_scans"]:
                scans.append(f"{NAMES[backend]} {label}: {', '.join(plan['table_scans'])}")
    out += ["", "Whole-table scans in the plans: " + ("; ".join(scans) or "none") + ".", ""]
    for backend, result in backends.items():
        r = result["reads"]
        if "background_visible_latency" in r:
            out.append(
                f"{NAMES[backend]} at the background rate: request → ack p50 / p99 / max "
                f"{_ms(r['background_ack_latency'])} ms; request → visible in the API "
                f"{_ms(r['background_visible_latency'])} ms."
            )
    out.append("")
    out.append(
        "Server peak RSS during the reads (MB): "
        + ", ".join(f"{NAMES[b]} {r['reads']['server_peak_rss_mb']:g}" for b, r in backends.items())
        + "."
    )
    return [*out, ""]


def _growth_tables(document: dict[str, Any]) -> list[str]:
    out = ["## Growth: the same reads at every size (no ingest)", ""]
    for backend, points in document["growth"].items():
        sizes = list(points)
        out += [
            f"### {NAMES[backend]}: API p99 (database p99), milliseconds",
            "",
            "| read | "
            + " | ".join(f"{points[s]['dataset']['messages']:,} msgs" for s in sizes)
            + " |",
            "| --- |" + " --- |" * len(sizes),
        ]
        for label, (title, _target) in READS.items():
            cells = [
                f"{points[s]['api'][label]['p99_ms']:g} "
                f"({points[s]['database'][label]['p99_ms']:g})"
                for s in sizes
            ]
            out.append(f"| {title} | " + " | ".join(cells) + " |")
        scans = [
            f"{s} {label}: {', '.join(plan['table_scans'])}"
            for s in sizes
            for label, plan in points[s]["plans"].items()
            if plan["table_scans"]
        ]
        out += [
            "",
            "Whole-table scans: "
            + ("; ".join(scans) or "none")
            + ". Server peak RSS (MB): "
            + ", ".join(f"{s} {points[s]['server_peak_rss_mb']:g}" for s in sizes)
            + ". Server CPU per API request (ms): "
            + ", ".join(f"{s} {points[s].get('server_cpu_ms_per_request', 0):g}" for s in sizes)
            + ".",
            "",
        ]
    return out


def _profiles(document: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for backend, result in document["backends"].items():
        profile = result["ingest"]["hilo"].get("profile")
        if not profile or not profile.get("samples"):
            continue
        busy = profile.get("interpreter_busy")
        out += [
            f"## Where {NAMES[backend]} ingest spends its time (py-spy)",
            "",
            f"{profile['samples']:,} samples of the server holding the GIL while the measured "
            "deliveries were acknowledged and processed"
            + (f": the interpreter was busy {busy:.0%} of the time." if busy else "."),
            "",
            "| layer (own time) | share |",
            "| --- | --- |",
        ]
        out += [f"| {name} | {share:.1%} |" for name, share in profile["by_layer"].items()]
        out += ["", "| Hilo function (with what it calls) | share |", "| --- | --- |"]
        out += [f"| `{f['function']}` | {f['share']:.1%} |" for f in profile["hilo"]]
        out.append("")
    return out


def plans_markdown(document: dict[str, Any]) -> str:
    """Every captured statement with its plan, per backend (and per growth size)."""
    out = [f"# Query plans: {document['mode']} run", ""]
    sections: list[tuple[str, dict[str, Any]]] = []
    for backend, result in document["backends"].items():
        sections.append(
            (
                f"{NAMES[backend]}, {result['dataset']['messages']:,} messages, under ingest",
                result["reads"]["plans"],
            )
        )
    for backend, points in document.get("growth", {}).items():
        for point in points.values():
            sections.append(
                (f"{NAMES[backend]}, {point['dataset']['messages']:,} messages", point["plans"])
            )
    for title, plans in sections:
        out += [f"## {title}", ""]
        for label, plan in plans.items():
            out += [f"### {READS[label][0]}", ""]
            for statement in plan["statements"]:
                out += ["```sql", statement["sql"], "```", "```", statement["plan"], "```", ""]
    return "\n".join(out)


def latency_chart(document: dict[str, Any]) -> str:
    """p99 of every read, API and database, per backend, with the targets."""
    groups = [title for title, _t in READS.values()]
    series = []
    for backend, result in document["backends"].items():
        r = result["reads"]
        series.append((f"{NAMES[backend]} API p99", [r["api"][k]["p99_ms"] for k in READS]))
        series.append(
            (f"{NAMES[backend]} database p99", [r["database"][k]["p99_ms"] for k in READS])
        )
    return plot.bars(
        f"Agent reads under ingest ({document['size']['label']} data set): p99 latency",
        groups,
        series,
        targets=[t for _title, t in READS.values()],
    )


def growth_chart(backend: str, points: dict[str, Any]) -> str:
    """What each read costs the database (p50 of the same SQL) against the number of messages."""
    sizes = list(points)
    xs = [float(points[s]["dataset"]["messages"]) for s in sizes]
    series = [
        (SHORT[label], [points[s]["database"][label]["p50_ms"] for s in sizes]) for label in READS
    ]
    return plot.lines(
        f"{NAMES[backend]}: each read's queries on the database (p50) as the data set grows",
        xs,
        series,
        x_label="messages in the workspace",
    )
