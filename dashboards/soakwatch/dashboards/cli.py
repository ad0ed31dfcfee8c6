"""``soak dashboards``: build the Grafana dashboards, push them into a folder, mark runs.

    soak dashboards build --output-dir DIR [--check] [--configmap FILE [--namespace NS]]
                          [--rules FILE|NAME]
    soak dashboards push --grafana-url URL [--folder TITLE] [--folder-uid UID] [--dir DIR]
    soak dashboards annotate --grafana-url URL --run-id ID --start TIME [--end TIME]

Credentials: user:password in the URL, or a token in ``SOAK_GRAFANA_TOKEN`` (never a flag, so it
stays out of shell history and process lists). TIME: Unix seconds or ISO 8601.

``build`` writes only where it is told (``--output-dir``, created when missing, and/or
``--configmap``): never into the installed package. ``push`` needs the grafana extra, ``build``
also the Grafana Foundation SDK (Python 3.11+).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from soakwatch import console
from soakwatch.cli import add_version, run_main
from soakwatch.configfile import redact_url
from soakwatch.errors import UsageError
from soakwatch.extras import require_extra

if TYPE_CHECKING:
    from soakwatch.rules import RuleSet

__all__ = ["main"]

PROG = "soak dashboards"
# The committed JSON models, packaged next to this module (push needs no SDK to send them).
PACKAGED_DIR = Path(__file__).resolve().parent

TOKEN_VARIABLE = "SOAK_GRAFANA_TOKEN"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _parser() -> argparse.ArgumentParser:
    from soakwatch.dashboards.push import DEFAULT_FOLDER_TITLE, DEFAULT_FOLDER_UID

    parser = _Parser(prog=PROG, description="Grafana dashboards of soakwatch.")
    add_version(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    build = commands.add_parser(
        "build",
        help="write the dashboard JSON models",
        description="Build the dashboard JSON models into --output-dir (created when missing) "
        "and/or a ConfigMap file; at least one of the two is required. In a checkout: "
        "soak dashboards build -o dashboards/soakwatch/dashboards",
    )
    build.add_argument(
        "-o", "--output-dir", metavar="DIR", help="write (or with --check compare) the *.json here"
    )
    build.add_argument("--check", action="store_true", help="exit 1 when the files are stale")
    build.add_argument(
        "--configmap",
        metavar="FILE",
        help="write them as a Kubernetes ConfigMap for Grafana's dashboard sidecar",
    )
    build.add_argument("--namespace", help="namespace of the ConfigMap")
    build.add_argument(
        "--rules",
        metavar="FILE|NAME",
        help="soak rules whose thresholds and windows the panels draw: a file, or a packaged "
        "name (default, a preset such as quick, a pack such as node); default: default",
    )
    push = commands.add_parser("push", help="create or replace the dashboards in a folder")
    push.add_argument("--grafana-url", required=True, metavar="URL")
    push.add_argument("--folder", default=DEFAULT_FOLDER_TITLE, help="folder title")
    push.add_argument("--folder-uid", default=DEFAULT_FOLDER_UID, help="folder uid")
    push.add_argument("--dir", metavar="DIR", help="push these *.json (default: the packaged)")
    annotate = commands.add_parser("annotate", help="mark a soak run on the dashboards")
    annotate.add_argument("--grafana-url", required=True, metavar="URL")
    annotate.add_argument("--run-id", required=True)
    annotate.add_argument("--start", required=True, type=_time, metavar="TIME")
    annotate.add_argument("--end", type=_time, metavar="TIME")
    annotate.add_argument("--text")
    return parser


def _time(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not Unix seconds or ISO 8601: {text!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def _build(args: argparse.Namespace) -> int:
    if not args.output_dir and not args.configmap:
        raise UsageError("build needs --output-dir DIR and/or --configmap FILE")
    if sys.version_info < (3, 11):  # the SDK's own floor; pushing the committed JSON has none
        raise UsageError("build needs Python 3.11+ (grafana-foundation-sdk); push does not")
    require_extra("grafana", "grafana_foundation_sdk")
    from soakwatch.dashboards.build import build_all, render_configmap

    stale = []
    built = build_all(_rules(args.rules))
    outputs: dict[Path, str] = {}
    if args.output_dir:
        directory = Path(args.output_dir)
        outputs.update({directory / name: text for name, text in built.items()})
    if args.configmap:
        outputs[Path(args.configmap)] = render_configmap(built, namespace=args.namespace)
    for path, text in outputs.items():
        if args.check:
            current = path.read_text(encoding="utf-8") if path.exists() else None
            if current != text:
                stale.append(str(path))
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        console.out(f"wrote {path}")
    if stale:
        console.error(f"{PROG}: stale: {', '.join(stale)}; run soak dashboards build")
        return 1
    if args.check:
        console.out("dashboards are up to date")
    return 0


def _rules(ref: str | None) -> RuleSet:
    """The rule set of ``--rules FILE|NAME`` (a packaged name: default, a preset, a pack); a
    ConfigError naming the file and key, or the known names, when it is wrong."""
    from soakwatch.rules import load_rules, resolve_rules

    path = resolve_rules(ref)
    if not path.is_file():
        raise UsageError(f"--rules {ref}: no such file")
    return load_rules(path)


def _load_models(directory: Path) -> list[dict[str, Any]]:
    models = []
    for path in sorted(directory.glob("*.json")):
        try:
            models.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise UsageError(f"{path}: not a dashboard JSON model ({exc})") from None
    if not models:
        raise UsageError(f"no *.json dashboards in {directory}")
    return models


def _push(args: argparse.Namespace) -> int:
    require_extra("grafana", "grafana_client")
    from soakwatch.dashboards.push import connect, ensure_folder, push_dashboards

    api = connect(args.grafana_url, token=os.environ.get(TOKEN_VARIABLE) or None)
    folder_uid = ensure_folder(api, uid=args.folder_uid, title=args.folder)
    for pushed in push_dashboards(
        api, _load_models(Path(args.dir) if args.dir else PACKAGED_DIR), folder_uid=folder_uid
    ):
        console.out(f"{pushed.title}: version {pushed.version} {pushed.url}")
    console.out(f"pushed to folder {args.folder!r} of {redact_url(args.grafana_url)}")
    return 0


def _annotate(args: argparse.Namespace) -> int:
    require_extra("grafana", "grafana_client")
    from soakwatch.dashboards.push import annotate_run, connect

    if args.end is not None and args.end < args.start:
        raise UsageError("--end is before --start")
    api = connect(args.grafana_url, token=os.environ.get(TOKEN_VARIABLE) or None)
    annotation_id = annotate_run(
        api, args.run_id, start_seconds=args.start, end_seconds=args.end, text=args.text
    )
    console.out(f"annotation {annotation_id} for run {args.run_id}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run_main(PROG, _main, argv)


def _main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    if args.command == "build":
        return _build(args)
    if args.command == "push":
        return _push(args)
    if args.command == "annotate":
        return _annotate(args)
    raise UsageError("usage: soak dashboards build|push|annotate (see --help)")
