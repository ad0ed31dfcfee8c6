"""``soak rules``: generate Prometheus rules from the soak rules.

    soak rules prometheus [--rules FILE] [--output FILE] [--format rules|kubernetes]
                          [--grafana-url URL] [--check]

``--check`` compares the output file with what would be generated and exits 1 when it is stale
(for CI); without ``--output`` the rules go to stdout. ``--output`` creates missing folders. The
header names the spec the rules came from.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from soakwatch import console
from soakwatch.cli import add_version, run_main
from soakwatch.errors import UsageError

__all__ = ["main"]

PROG = "soak rules"

FORMATS = ("rules", "kubernetes")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Generate alerting rules from the soak rules."
    )
    add_version(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    prom = commands.add_parser(
        "prometheus",
        help="Prometheus recording and alerting rules",
        description="Prometheus recording and alerting rules from the soak rules spec.",
    )
    prom.add_argument("--rules", metavar="FILE", help="soak rules spec (default: the packaged one)")
    prom.add_argument("--output", "-o", metavar="FILE", help="write here (default: stdout)")
    prom.add_argument(
        "--format",
        choices=FORMATS,
        default="rules",
        help="a Prometheus rule file, or a Prometheus Operator PrometheusRule manifest",
    )
    prom.add_argument(
        "--grafana-url",
        default=None,
        metavar="URL",
        help="base URL of Grafana for the dashboard links in annotations "
        "(default: http://localhost:3000)",
    )
    prom.add_argument("--name", default="soakwatch", help="PrometheusRule name (kubernetes)")
    prom.add_argument("--namespace", default=None, help="PrometheusRule namespace (kubernetes)")
    prom.add_argument(
        "--check",
        action="store_true",
        help="do not write: exit 1 when --output differs from what would be generated",
    )
    return parser


def _source_name(rules_path: str | None, resolved: str) -> str:
    """What the header names as the source: the packaged spec by its place in the repository,
    a packaged set by name, a file by the path it was given as."""
    from soakwatch.rules.alerting import PACKAGED_SOURCE
    from soakwatch.rules.model import DEFAULT_RULES_PATH

    if rules_path is None or Path(resolved).resolve() == DEFAULT_RULES_PATH.resolve():
        return PACKAGED_SOURCE
    if rules_path != resolved and "/" not in rules_path and "." not in rules_path:
        return f"the packaged rule set {rules_path!r} ({Path(resolved).name})"
    return rules_path


def generate_text(
    rules_path: str | None,
    *,
    output_format: str = "rules",
    grafana_url: str | None = None,
    name: str = "soakwatch",
    namespace: str | None = None,
) -> str:
    """The generated file's text; what the CLI writes and the staleness tests compare. Its
    header names the spec it came from (``--rules``, else the packaged one)."""
    from soakwatch.rules.alerting import (
        DEFAULT_GRAFANA_URL,
        generate,
        left_out,
        render_prometheus_rule,
        render_rule_file,
    )
    from soakwatch.rules.model import load_rules

    rules = load_rules(rules_path)
    groups = generate(rules, grafana_url=grafana_url or DEFAULT_GRAFANA_URL)
    source = _source_name(rules_path, rules.source)
    if output_format == "kubernetes":
        return render_prometheus_rule(
            groups, name=name, namespace=namespace, source=source, left_out=left_out(rules)
        )
    return render_rule_file(groups, source=source, left_out=left_out(rules))


def _write(path: Path, text: str) -> None:
    """Write ``text``, creating missing folders (like ``soak dashboards build -o``); a folder
    that cannot be made or a file that cannot be written is a usage error (exit 2). Not
    soakwatch.files.write_atomic: its 0600 would keep a Prometheus running as another user
    (the compose setup mounts this file) from reading the rules."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except (FileExistsError, NotADirectoryError) as exc:
        raise UsageError(
            f"cannot write {path}: {exc.filename or path.parent} is not a folder"
        ) from None
    except OSError as exc:
        reason = exc.strerror or str(exc)
        where = f" ({exc.filename})" if exc.filename and str(exc.filename) != str(path) else ""
        raise UsageError(f"cannot write {path}: {reason}{where}") from None


def _run(args: argparse.Namespace) -> int:
    if args.command != "prometheus":
        raise UsageError("usage: soak rules prometheus [--rules FILE] [--output FILE]")
    text = generate_text(
        args.rules,
        output_format=args.format,
        grafana_url=args.grafana_url,
        name=args.name,
        namespace=args.namespace,
    )
    if args.check:
        if not args.output:
            raise UsageError("--check needs --output FILE to compare with")
        try:
            current = Path(args.output).read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot read {args.output}: {exc.strerror}") from None
        if current != text:
            console.error(f"{args.output} is stale: run soak rules prometheus to regenerate it")
            return 1
        console.out(f"{args.output} is up to date")
        return 0
    if args.output:
        _write(Path(args.output), text)
        console.status(f"wrote {args.output}", final=True)
    else:
        console.out(text.rstrip("\n"))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _main, argv)


def _main(argv: list[str]) -> int:
    return _run(_parser().parse_args(argv))
