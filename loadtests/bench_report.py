"""The benchmark report: each figure, its reference from the same run, the ratio, its target and
pass/miss; then every figure of every scenario, the machine and the command."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path
from typing import Any

from loadtests.bench_analytics import ENDPOINTS, REFERENCE

INTAKE = (
    "pgbench_single",
    "http_single",
    "http_single_pgbouncer",
    "http_hot_product",
    "http_bulk",
)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}".rstrip("0").rstrip(".") if abs(value) < 10 else f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("**pass**" if ok else "**MISS**")


Row = tuple[str, str, str, str, str, str]


def _vs_ceiling(label: str, figures: dict[str, Any], ceiling: str, minimum: float | None) -> Row:
    """An intake throughput row: orders/s against the raw-SQL ceiling of the same run."""
    ratio = figures.get("ratio to SQL ceiling")
    return (
        label,
        f"{_fmt(figures['orders/s'])} orders/s",
        ceiling,
        _fmt(ratio) if ratio is not None else "",
        f"≥ {minimum}" if minimum is not None else "— (none set)",
        _verdict(None if ratio is None or minimum is None else ratio >= minimum),
    )


def summary_rows(results: dict[str, dict[str, Any]]) -> list[Row]:
    """(figure, value, reference measured in the same run, ratio, target, pass/miss)."""
    rows: list[Row] = []
    pg = results.get("pgbench_single", {})
    ceiling = f"raw SQL (pgbench) {_fmt(pg['orders/s'])} orders/s" if pg else "not run"
    if single := results.get("http_single"):
        label = f"intake: accepted orders/s ({single['clients']} clients, 50 products)"
        rows.append(_vs_ceiling(label, single, ceiling, 0.4))
        rows.append(
            (
                "intake: latency p50 / p99",
                f"{_fmt(single['p50 ms'])} / {_fmt(single['p99 ms'])} ms",
                f"pgbench {_fmt(pg['p50 ms'])} / {_fmt(pg['p99 ms'])} ms" if pg else "",
                _fmt(round(single["p99 ms"] / pg["p99 ms"], 2)) if pg.get("p99 ms") else "",
                "p99 < 60 ms",
                _verdict(single["p99 ms"] < 60),
            )
        )
        rows.append(("intake: 5xx", _fmt(single["5xx"]), "", "", "0", _verdict(single["5xx"] == 0)))
    if (pooled := results.get("http_single_pgbouncer")) and "orders/s" in pooled:
        direct = results.get("http_single", {}).get("orders/s")
        rows.append(
            (
                "intake through PgBouncer (transaction pooling): accepted orders/s",
                f"{_fmt(pooled['orders/s'])} orders/s",
                f"direct {_fmt(direct)} orders/s" if direct else "not run",
                _fmt(pooled["ratio to direct"]) if "ratio to direct" in pooled else "",
                "— (none set)",
                _verdict(None),
            )
        )
        rows.append(
            (
                "intake through PgBouncer: 5xx",
                _fmt(pooled["5xx"]),
                "",
                "",
                "0",
                _verdict(pooled["5xx"] == 0),
            )
        )
    if hot := results.get("http_hot_product"):
        label = (
            f"hot product: accepted orders/s ({_fmt(hot['units'])} units, {hot['clients']} "
            f"clients, until sold out in {_fmt(hot['seconds'])} s)"
        )
        rows.append(_vs_ceiling(label, hot, ceiling, None))
        rows.append(
            (
                "hot product: oversell (units sold beyond the stock)",
                f"{_fmt(hot['oversell'])} (sold {_fmt(hot['units sold (db)'])}, "
                f"{_fmt(hot['units left'])} left)",
                "",
                "",
                "0",
                _verdict(hot["oversell"] == 0 and hot["5xx"] == 0),
            )
        )
    if bulk := results.get("http_bulk"):
        label = f"bulk: orders/s through bulk_create of {_fmt(bulk['orders/request'])}"
        rows.append(_vs_ceiling(label, bulk, ceiling, 1.5))
    if zero := results.get("pipeline_zero_delays"):
        best, noop = zero["pipeline_best"], zero["noop_best"]
        two, noop_two = zero["pipeline_two_workers"], zero["noop_two_workers"]
        for label, run, ref, ratio in (
            (f"1 worker (concurrency {best['concurrency']})", best, noop, "ratio_one_worker"),
            (
                f"2 workers (concurrency {two['concurrency']} each)",
                two,
                noop_two,
                "ratio_two_workers",
            ),
        ):
            rows.append(
                (
                    f"pipeline, zero delays: orders/s pending → delivered, {label}",
                    f"{_fmt(run['orders_per_s'])} orders/s",
                    f"no-op job {_fmt(ref['jobs_per_s'])} jobs/s "
                    f"({ref['processes']} × concurrency {ref['concurrency']})",
                    _fmt(zero[ratio]),
                    "≥ 0.2",
                    _verdict(zero[ratio] >= 0.2),
                )
            )
    if delays := results.get("pipeline_default_delays"):
        runs = delays["runs"]
        run = delays["best"] or min(runs, key=lambda r: r["arrival_per_s"])
        within = delays["best"] is not None
        at = f"{_fmt(run['arrived_per_s'])} orders/s arriving, 1 worker"
        rows.append(
            (
                f"pipeline, default delays, bulk-fed: orders completed per minute ({at})",
                f"{_fmt(run['completed_per_min'])}/min",
                "a worker sleeping through the delays: < 30/min",
                "",
                "—",
                _verdict(None),
            )
        )
        rows.append(
            (
                f"pipeline, default delays, bulk-fed: orders in flight with stage p99 lag ≤ 1 s ({at})",
                f"{_fmt(run['in_flight_avg'])} (max {_fmt(run['in_flight_max'])})",
                "",
                "",
                "≥ 1,000",
                _verdict(within and run["in_flight_avg"] >= 1000),
            )
        )
        rows.append(
            (
                f"pipeline, default delays, bulk-fed: stage start lag behind schedule ({at})",
                f"p50 {_fmt(run['lag_p50_s'])} s / p99 {_fmt(run['lag_p99_s'])} s",
                "",
                "",
                "p99 ≤ 1 s",
                _verdict(run["lag_p99_s"] is not None and run["lag_p99_s"] <= 1.0),
            )
        )
    if hooks := results.get("webhook_delivery"):
        at = f"{_fmt(hooks['arrival_per_s'])} orders/s arriving, {_fmt(hooks['events'])} events"
        rows.append(
            (
                f"webhooks: every event delivered ({at})",
                f"{_fmt(hooks['delivered'])} delivered, {_fmt(hooks['undelivered'])} missing, "
                f"{_fmt(hooks['delivered_twice'])} twice",
                "",
                "",
                "none missing",
                _verdict(hooks["undelivered"] == 0),
            )
        )
        rows.append(
            (
                f"webhooks: delivery lag, event to receipt ({at})",
                f"p50 {_fmt(hooks['lag_p50_s'])} s / p99 {_fmt(hooks['lag_p99_s'])} s",
                "",
                "",
                "p99 ≤ 2 s",
                _verdict(hooks["lag_p99_s"] is not None and hooks["lag_p99_s"] <= 2.0),
            )
        )
    if paired := results.get("http_single_metrics"):
        ratio = paired["ratio on/off"]
        rows.append(
            (
                "intake with metrics on (multiprocess) vs off",
                f"{_fmt(paired['orders/s metrics on'])} orders/s",
                f"metrics off {_fmt(paired['orders/s metrics off'])} orders/s",
                _fmt(ratio),
                "≥ 0.95",
                _verdict(ratio >= 0.95),
            )
        )
    if scrape := results.get("metrics_scrape"):
        rows.append(
            (
                f"GET /metrics p95 ({_fmt(scrape['orders (estimate)'])} orders, "
                f"{_fmt(scrape['waiting jobs'])} waiting jobs)",
                f"{_fmt(scrape['p95 ms'])} ms (p50 {_fmt(scrape['p50 ms'])})",
                "",
                "",
                "≤ 50 ms",
                _verdict(scrape["p95 ms"] <= 50),
            )
        )
    if steady := results.get("steady_state"):
        best = steady["highest rate that holds"]
        reference = steady["reference cpu ms/order (intake alone + pipeline alone)"]
        capacity = steady["reference: orders/s the cores hold at that cost"]
        rows.append(
            (
                "steady state (HTTP intake + worker pool, as make run): highest open-loop rate "
                "that holds (intake p99 ≤ 100 ms, no 5xx, stage lag p99 ≤ 1 s, in flight flat)",
                f"{_fmt(best)} orders/s" if best is not None else "none of the rates tried",
                f"the cores at the CPU of the parts alone: {_fmt(capacity)} orders/s",
                _fmt(round(best / capacity, 2)) if best is not None and capacity else "",
                "≥ 150 orders/s",
                _verdict(best is not None and best >= 150),
            )
        )
        for run in steady["runs"]:
            rows.append(
                (
                    f"steady state at {run['rate']:g} orders/s: system CPU per order "
                    "(web + worker + PostgreSQL)",
                    f"{_fmt(run['system cpu ms/order'])} ms",
                    f"intake alone + pipeline alone {_fmt(reference)} ms",
                    _fmt(run["ratio system cpu / reference"]),
                    "— (none set)",
                    _verdict(None),
                )
            )
    rows += analytics_rows(results.get("analytics"))
    return rows


def analytics_rows(figures: dict[str, Any] | None) -> list[Row]:
    """Per analytics endpoint: p95 over HTTP at the filled volume, against the same requests
    on the small database earlier in the run."""
    if not figures:
        return []
    rows: list[Row] = []
    for name in ENDPOINTS:
        p95, small = figures[f"{name} p95 ms"], figures[f"{name} p95 ms (small)"]
        rows.append(
            (
                f"analytics {name}: p50 / p95 at {_fmt(figures['large orders'])} orders",
                f"{_fmt(figures[f'{name} p50 ms'])} / {_fmt(p95)} ms",
                f"{_fmt(figures[f'{name} p50 ms (small)'])} / {_fmt(small)} ms at "
                f"{_fmt(figures['small orders'])} orders",
                _fmt(round(p95 / small, 2)) if small else "",
                "p95 ≤ 100 ms",
                _verdict(p95 <= 100),
            )
        )
    rows.append(
        (
            f"analytics: reference {REFERENCE} p50 / p95 (the machine's load alone)",
            f"{_fmt(figures['reference p50 ms'])} / {_fmt(figures['reference p95 ms'])} ms",
            f"{_fmt(figures['reference p50 ms (small)'])} / "
            f"{_fmt(figures['reference p95 ms (small)'])} ms on the small database",
            "",
            "",
            "",
        )
    )
    rows.append(
        (
            "analytics: rollup refresh, full / incremental",
            f"{_fmt(figures['full refresh s'])} / {_fmt(figures['incremental refresh s'])} s",
            f"fill {_fmt(figures['fill s'])} s",
            "",
            "— (none set)",
            "",
        )
    )
    return rows


def _table(header: list[str], rows: list[Any]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown_table(results: dict[str, dict[str, Any]]) -> str:
    """Every intake figure, one row per scenario (medians over the rounds)."""
    rows = {k: v for k, v in results.items() if k in INTAKE}
    columns: list[str] = []
    for figures in rows.values():
        for key in figures:
            if key not in columns:
                columns.append(key)
    lines = [
        "| scenario | " + " | ".join(columns) + " |",
        "| --- | " + " | ".join("---:" for _ in columns) + " |",
    ]
    for name, figures in rows.items():
        lines.append(f"| {name} | " + " | ".join(str(figures.get(c, "")) for c in columns) + " |")
    if "statements" in results:
        s = results["statements"]
        lines.append("")
        lines.append(
            f"SQL statements (as Django counts them, BEGIN and COMMIT included): single order "
            f"{s['statements per single order']} ({s['single']}); 1,000-order bulk "
            f"{s['statements per 1,000-order bulk']}."
        )
    return "\n".join(lines)


def pipeline_markdown(zero: dict[str, Any] | None, delays: dict[str, Any] | None) -> str:
    """Every pipeline run: the zero-delay rates next to the no-op job's, each default-delay run."""
    rows = ["| scenario | figure | reference | ratio |", "| --- | --- | --- | --- |"]
    if zero:
        b, n = zero["pipeline_best"], zero["noop_best"]
        rows.append(
            f"| zero delays, 1 worker (concurrency {b['concurrency']}) | "
            f"{b['orders_per_s']} orders/s | no-op {n['jobs_per_s']} jobs/s "
            f"(concurrency {n['concurrency']}) | {zero['ratio_one_worker']} |"
        )
        t, m = zero["pipeline_two_workers"], zero["noop_two_workers"]
        rows.append(
            f"| zero delays, 2 worker processes | {t['orders_per_s']} orders/s | "
            f"no-op {m['jobs_per_s']} jobs/s | {zero['ratio_two_workers']} |"
        )
    for run in (delays or {}).get("runs", []):
        rows.append(
            f"| default delays, bulk-fed, 1 worker, {run['arrived_per_s']:g} orders/s arriving | "
            f"{run['completed_per_min']} completed/min, {run['in_flight_avg']} in flight "
            f"(max {run['in_flight_max']}) | stage start lag p50 {run['lag_p50_s']} s, "
            f"p99 {run['lag_p99_s']} s | |"
        )
    return "\n".join(rows)


def steady_markdown(result: dict[str, Any]) -> str:
    """One row per rate, then the reference."""
    header = [
        "rate /s",
        "intake p50 / p99 ms",
        "5xx / other",
        "stage lag p50 / p99 s",
        "in flight start → end",
        "CPU ms/order web / worker / pg (system)",
        "stage jobs / order",
        "% of machine",
        "holds",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for r in result["runs"]:
        lines.append(
            f"| {r['rate']:g} | {r['intake p50 ms']} / {r['intake p99 ms']} | {r['5xx']} / "
            f"{r['other errors']} | {r['lag p50 s']} / {r['lag p99 s']} | "
            f"{r['in flight at start']} → {r['in flight at end']}"
            f"{' (growing)' if r['in flight growing'] else ''} | "
            f"{r['web cpu ms/order']} / {r['worker cpu ms/order']} / {r['postgres cpu ms/order']}"
            f" ({r['system cpu ms/order']}) | {r['stage jobs per accepted order']} | "
            f"{r['cpu % of machine']} | "
            f"{'yes' if r['holds'] else 'no'} |"
        )
    ia, pa = result["intake alone"], result["pipeline alone"]
    lines += [
        "",
        f"Reference, same run: intake alone {ia['cpu ms/order (web + postgres)']} ms CPU/order "
        f"({ia['rate']:g} orders/s open-loop, no worker; p99 {ia['intake p99 ms']} ms) + pipeline "
        f"alone {pa['cpu ms/order (worker + postgres)']} ms CPU/order ({pa['orders']} orders "
        f"drained, web idle) = {result['reference cpu ms/order (intake alone + pipeline alone)']}"
        f" ms, at which the cores would hold "
        f"{result['reference: orders/s the cores hold at that cost']} orders/s. Highest rate "
        f"that holds: {result['highest rate that holds']} orders/s.",
    ]
    return "\n".join(lines)


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = " (" + line.split(":", 1)[1].strip() + ")"
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores{cpu}, {platform.system()} {platform.release()}"


def report(
    results: dict[str, dict[str, Any]],
    *,
    command: str,
    pg_version: str,
    started: float,
    load_before: tuple[float, ...],
) -> str:
    load_after = os.getloadavg()
    header = [
        f"Benchmark run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime(started))}, "
        f"{round(time.time() - started)} s: {command}",
        "",
        f"Machine: {machine()}; PostgreSQL {pg_version} (a fresh embedded cluster started for "
        "this run: fsync and synchronous_commit off, as in the dev stack); load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after (the load generator, gunicorn, "
        "the worker and PostgreSQL share these cores).",
        "",
    ]
    body = [
        _table(
            ["figure", "value", "reference (same run)", "ratio", "target", "result"],
            summary_rows(results),
        ),
        "",
        "Ratios: value / reference; for the intake rows the median of the per-round ratios.",
    ]
    if any(k in results for k in INTAKE):
        body += ["", "Order intake, every figure (medians over the rounds):", ""]
        body.append(markdown_table(results))
    zero = results.get("pipeline_zero_delays")
    delays = results.get("pipeline_default_delays")
    if zero or delays:
        body += ["", "Pipeline, every run:", "", pipeline_markdown(zero, delays)]
        if zero:
            per_c = ", ".join(
                f"concurrency {p['concurrency']}: {p['orders_per_s']} orders/s vs no-op "
                f"{n['jobs_per_s']} jobs/s"
                for p, n in zip(zero["pipeline_one_worker"], zero["noop_one_worker"], strict=True)
            )
            body.append(f"\nOne worker by concurrency: {per_c}.")
    if steady := results.get("steady_state"):
        body += ["", "Steady state, every rate:", "", steady_markdown(steady)]
    return "\n".join(header + body) + "\n"
