"""``soak-analyze``: judge a run's series against the soak rules.

Exit codes (``soakwatch.exitcodes``): 0 pass, 1 fail, 3 inconclusive, 2 usage or data-source
error (never a pass when the data could not be read) or a missing analyzer extra, 130 Ctrl-C
(except while ``--watch`` waits: Ctrl-C then ends the watch and reports what it has). The
parser imports nothing heavy, so ``--help`` and ``--version`` work on a core install; numpy
and matplotlib are imported only once the arguments are parsed."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from soakwatch import console
from soakwatch.cli import add_version, run_main
from soakwatch.durations import format_duration, parse_duration
from soakwatch.errors import SourceError, UsageError
from soakwatch.exitcodes import EXIT_ERROR, exit_code_of
from soakwatch.extras import require_extra

if TYPE_CHECKING:
    from soakwatch.analyzer.report import Report
    from soakwatch.analyzer.sources import PrometheusSource, RunDirSource
    from soakwatch.rules.model import RuleSet

__all__ = ["EXIT_ERROR", "main", "parse_time"]

PROG = "soak-analyze"


class _Parser(argparse.ArgumentParser):
    # one line, "soak-analyze: argument --format: invalid choice: ...", like every error
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def parse_time(text: str) -> float:
    """A Unix timestamp ("1732550400") or an RFC 3339 time ("2026-11-25T20:00:00Z"; without a
    zone, UTC). Raises UsageError."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(f"--end: not a Unix timestamp or RFC 3339 time: {text!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Judge a soak run's series against the soak rules: pass (0), fail (1), "
        "inconclusive (3); 2 on a usage or data-source error.",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--prometheus", metavar="URL", help="Prometheus-compatible HTTP API")
    where.add_argument("--run-dir", metavar="DIR", help="a run directory's recorded samples")
    parser.add_argument("--range", metavar="DURATION", help="how far back from --end (48h)")
    parser.add_argument("--end", metavar="TIME", help="Unix timestamp or RFC 3339 (default now)")
    parser.add_argument(
        "--rules",
        metavar="NAME|FILE",
        help="a preset (quick, ci, staging, production), a runtime pack (go, jvm, node, dotnet, "
        "kubernetes), default, or a rules file (default: the packaged soak.yaml)",
    )
    parser.add_argument("--selector", metavar="LABELS", help="e.g. '{service=\"api\"}'")
    parser.add_argument("--only", metavar="RULE[,RULE]", help="judge only these rules")
    parser.add_argument("--list-rules", action="store_true", help="list the rules and exit")
    parser.add_argument(
        "--format",
        default="table",
        choices=("table", "json", "junit", "markdown", "html"),
        help="output format (default table)",
    )
    parser.add_argument("--output", metavar="FILE", help="write the report here, not stdout")
    parser.add_argument(
        "--watch",
        metavar="INTERVAL",
        help="re-evaluate every INTERVAL; stop early on a failure (e.g. a leak whose lower "
        "bound is already above the threshold), else when --watch-for runs out",
    )
    parser.add_argument(
        "--watch-for", metavar="DURATION", help="stop watching after this long (default: never)"
    )
    parser.add_argument(
        "--memory-limit",
        metavar="SIZE",
        help="e.g. 2GiB: a growing memory series reports when it would reach this",
    )
    parser.add_argument(
        "--sliding-window",
        metavar="DURATION",
        help="also judge every rule on half-overlapping windows of this length",
    )
    parser.add_argument(
        "--jobs",
        metavar="N",
        type=int,
        help="worker processes judging a fleet of more than 50 services in shards (default: "
        "one per core, at most 4; 1: none); the results are the same",
    )
    parser.add_argument(
        "--compare",
        metavar="PREVIOUS.json",
        nargs="+",
        help="earlier JSON reports: show how each figure moved",
    )
    auth = parser.add_argument_group("Prometheus access")
    auth.add_argument("--bearer-token-file", metavar="FILE")
    auth.add_argument(
        "--basic-auth-user",
        metavar="USER",
        help="password from the environment variable SOAK_PROMETHEUS_PASSWORD",
    )
    auth.add_argument("--ca-file", metavar="FILE", help="CA bundle for https")
    auth.add_argument(
        "--step",
        metavar="DURATION",
        help="smallest query step (default: the sample interval the store holds, else 15s)",
    )
    auth.add_argument("--timeout", metavar="DURATION", default="30s", help="per request")
    add_version(parser)
    return parser


def _duration(flag: str, text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"{flag}: {exc}") from None
    if not seconds > 0:
        raise UsageError(f"{flag}: must be positive, got {text!r}")
    return seconds


def _source(args: argparse.Namespace) -> PrometheusSource | RunDirSource:
    from soakwatch.analyzer.sources import PrometheusSource, RunDirSource
    from soakwatch.configfile import check_url

    if args.run_dir:
        if not Path(args.run_dir).exists():
            raise SourceError(f"run directory not found: {args.run_dir}")
        return RunDirSource(args.run_dir)
    check_url(
        args.prometheus,
        schemes=("http", "https"),
        fail=lambda reason: UsageError(f"--prometheus: {reason}"),
    )
    token = None
    if args.bearer_token_file:
        try:
            token = Path(args.bearer_token_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise UsageError(f"--bearer-token-file: {exc.strerror}") from None
    basic = None
    if args.basic_auth_user:
        basic = (args.basic_auth_user, os.environ.get("SOAK_PROMETHEUS_PASSWORD", ""))
    return PrometheusSource(
        args.prometheus,
        bearer_token=token,
        basic_auth=basic,
        ca_bundle=args.ca_file,
        timeout_seconds=_duration("--timeout", args.timeout),
        # without --step: each query at the sample interval of its series in the store
        min_step_seconds=_duration("--step", args.step) if args.step else None,
    )


def _time_range(source: object, span: float | None, end_at: float | None) -> tuple[float, float]:
    from soakwatch.analyzer.sources import RunDirSource

    if isinstance(source, RunDirSource):
        first, last = source.time_range()
        end = end_at if end_at is not None else last
        start = end - span if span is not None else first
        return max(start, first), end
    if span is None:
        raise UsageError("--range is required with --prometheus (e.g. --range 48h)")
    end = end_at if end_at is not None else time.time()
    return end - span, end


def _render(
    report: Report,
    fmt: str,
    baselines: list[dict[str, Any]] | None,
    run_dir: str | None = None,
) -> str:
    from soakwatch.analyzer import formats

    if fmt == "html":
        from soakwatch.analyzer.html import render_html

        # the run directory's load summary and config go into the report
        return render_html(report, run_dir=Path(run_dir) if run_dir else None)
    if baselines is not None:
        from soakwatch.analyzer.compare import compare_reports, render_comparison

        comparison = compare_reports(report, baselines)
        if fmt == "json":
            data = report.to_json()
            data["comparison"] = comparison
            return json.dumps(data, indent=2, allow_nan=False)
        text: str = formats.FORMATS[fmt](report)
        if fmt in ("table", "markdown"):
            text += "\n\n" + render_comparison(comparison, markdown=fmt == "markdown")
        return text
    rendered: str = formats.FORMATS[fmt](report)
    return rendered


def _load_baselines(paths: list[str]) -> list[dict[str, Any]]:
    baselines = []
    for path in paths:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise UsageError(f"--compare: cannot read {path}: {exc.strerror}") from None
        except ValueError:
            raise UsageError(f"--compare: {path} is not JSON") from None
        if not isinstance(data, dict) or data.get("schema") != "soakwatch.report/v1":
            raise UsageError(f"--compare: {path} is not a soakwatch report (schema v1)")
        baselines.append(data)
    return baselines


def _with_memory_limit(ruleset: RuleSet, text: str) -> RuleSet:
    """The rule set with ``limit`` set on every slope rule."""
    import dataclasses
    from types import MappingProxyType

    from soakwatch.rules.model import parse_bytes

    try:
        limit = parse_bytes(text)
    except ValueError as exc:
        raise UsageError(f"--memory-limit: {exc}") from None
    rules = {
        name: dataclasses.replace(rule, limit=limit) if rule.kind == "slope" else rule
        for name, rule in ruleset.rules.items()
    }
    return dataclasses.replace(ruleset, rules=MappingProxyType(rules))


def _run(args: argparse.Namespace) -> int:
    from soakwatch.rules.model import load_rules

    ruleset = load_rules(args.rules)
    if args.memory_limit:
        ruleset = _with_memory_limit(ruleset, args.memory_limit)
    if args.list_rules:
        # where they come from on stderr: stdout is one rule per line (and its indented text)
        extending = f", extending {' then '.join(ruleset.bases)}" if ruleset.bases else ""
        console.error(f"{PROG}: rules from {ruleset.source}{extending}")
        for rule in ruleset.rules.values():
            console.out(
                f"{rule.name:<22} {rule.kind:<16} pass when {rule.comparison} "
                f"{rule.threshold:g} {rule.unit}"
                f"{'  (required)' if rule.required else ''}"
            )
            if rule.description:
                console.out(f"{'':<22} {rule.description}")
            metrics = ", ".join(f"{role}: {sel.promql()}" for role, sel in rule.metrics.items())
            console.out(f"{'':<22} {metrics}")
        if ruleset.disabled:
            console.error(f"{PROG}: disabled: {', '.join(ruleset.disabled)}")
        return 0
    require_extra("analyzer")  # numpy and matplotlib: before any fetch
    if not args.prometheus and not args.run_dir:
        raise UsageError("give --prometheus URL or --run-dir DIR")
    span = _duration("--range", args.range) if args.range else None
    end_at = parse_time(args.end) if args.end else None
    if args.prometheus and span is None:
        raise UsageError("--range is required with --prometheus (e.g. --range 48h)")
    only = [name.strip() for name in args.only.split(",") if name.strip()] if args.only else None
    ruleset.select(only)  # unknown names fail before any fetch
    baselines = _load_baselines(args.compare) if args.compare else None
    sliding = _duration("--sliding-window", args.sliding_window) if args.sliding_window else None
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, not {args.jobs}")
    source = _source(args)
    from soakwatch.analyzer.analysis import analyze

    watch = _duration("--watch", args.watch) if args.watch else None
    deadline = (
        time.monotonic() + _duration("--watch-for", args.watch_for) if args.watch_for else math.inf
    )
    while True:
        start, end = _time_range(source, span, end_at)
        report = analyze(
            source,
            ruleset,
            start,
            end,
            selector=args.selector,
            only=only,
            sliding_window_seconds=sliding,
            baselines=baselines,
            jobs=args.jobs,
        )
        # while watching, only a failure is final early: a pass needs the whole run
        if watch is None or report.verdict == "fail" or time.monotonic() >= deadline:
            break
        console.status(
            f"{report.verdict} after {format_duration(end - start)}; next look in "
            f"{format_duration(watch)}"
        )
        try:
            time.sleep(min(watch, max(deadline - time.monotonic(), 0.0)))
        except KeyboardInterrupt:
            break
    text = _render(report, args.format, baselines, args.run_dir)
    if args.output:
        try:
            Path(args.output).write_text(text + ("" if text.endswith("\n") else "\n"), "utf-8")
        except OSError as exc:
            raise UsageError(f"--output: cannot write {args.output}: {exc.strerror}") from None
        console.error(f"{PROG}: {report.verdict}; report written to {args.output}")
    else:
        console.out(text)
    return exit_code_of(report.verdict)


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _main, argv)


def _main(argv: list[str]) -> int:
    return _run(_parser().parse_args(argv))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
