"""``soak dashboards``: build the Grafana dashboards, push them into a folder, mark runs.

    soak dashboards build [--output-dir DIR] [--check]
    soak dashboards push --grafana-url URL [--folder TITLE] [--folder-uid UID] [--dir DIR]
    soak dashboards annotate --grafana-url URL --run-id ID --start TIME [--end TIME]

Credentials: user:password in the URL, or a token in ``SOAK_GRAFANA_TOKEN`` (never a flag, so it
stays out of shell history and process lists). TIME: Unix seconds or ISO 8601.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn

from soakwatch import console
from soakwatch.configfile import redact_url
from soakwatch.errors import SoakwatchError, UsageError

__all__ = ["main"]

TOKEN_VARIABLE = "SOAK_GRAFANA_TOKEN"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see {self.prog} --help)")


def _parser() -> argparse.ArgumentParser:
    from soakwatch.dashboards.push import DEFAULT_FOLDER_TITLE, DEFAULT_FOLDER_UID

    parser = _Parser(prog="soak dashboards", description="Grafana dashboards of soakwatch.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    build = commands.add_parser("build", help="write the dashboard JSON models")
    build.add_argument("--output-dir", metavar="DIR", help="default: the dashboards/ folder")
    build.add_argument("--check", action="store_true", help="exit 1 when the files are stale")
    build.add_argument(
        "--configmap",
        metavar="FILE",
        help="also write them as a Kubernetes ConfigMap for Grafana's dashboard sidecar",
    )
    build.add_argument("--namespace", help="namespace of the ConfigMap")
    push = commands.add_parser("push", help="create or replace the dashboards in a folder")
    push.add_argument("--grafana-url", required=True, metavar="URL")
    push.add_argument("--folder", default=DEFAULT_FOLDER_TITLE, help="folder title")
    push.add_argument("--folder-uid", default=DEFAULT_FOLDER_UID, help="folder uid")
    push.add_argument("--dir", metavar="DIR", help="push these *.json (default: the built-in)")
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


def _dashboards_dir(text: str | None) -> Path:
    # The committed JSON lives next to this module (no SDK import needed to push it).
    return Path(text) if text else Path(__file__).resolve().parent


def _build(args: argparse.Namespace) -> int:
    try:
        from soakwatch.dashboards.build import build_all, render_configmap
    except ImportError as exc:  # the SDK needs Python 3.11; pushing the committed JSON does not
        raise UsageError(
            f"soak dashboards build needs grafana-foundation-sdk ({exc}); "
            "pip install 'soakwatch[grafana]' on Python 3.11+"
        ) from None

    directory = _dashboards_dir(args.output_dir)
    stale = []
    built = build_all()
    outputs = {directory / name: text for name, text in built.items()}
    if args.configmap:
        outputs[Path(args.configmap)] = render_configmap(built, namespace=args.namespace)
    for path, text in outputs.items():
        if args.check:
            current = path.read_text(encoding="utf-8") if path.exists() else None
            if current != text:
                stale.append(str(path))
            continue
        path.write_text(text, encoding="utf-8")
        console.out(f"wrote {path}")
    if stale:
        console.error(f"stale: {', '.join(stale)}; run soak dashboards build")
        return 1
    if args.check:
        console.out("dashboards are up to date")
    return 0


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
    from soakwatch.dashboards.push import connect, ensure_folder, push_dashboards

    api = connect(args.grafana_url, token=os.environ.get(TOKEN_VARIABLE) or None)
    folder_uid = ensure_folder(api, uid=args.folder_uid, title=args.folder)
    for pushed in push_dashboards(
        api, _load_models(_dashboards_dir(args.dir)), folder_uid=folder_uid
    ):
        console.out(f"{pushed.title}: version {pushed.version} {pushed.url}")
    console.out(f"pushed to folder {args.folder!r} of {redact_url(args.grafana_url)}")
    return 0


def _annotate(args: argparse.Namespace) -> int:
    from soakwatch.dashboards.push import annotate_run, connect

    if args.end is not None and args.end < args.start:
        raise UsageError("--end is before --start")
    api = connect(args.grafana_url, token=os.environ.get(TOKEN_VARIABLE) or None)
    annotation_id = annotate_run(
        api, args.run_id, start_seconds=args.start, end_seconds=args.end, text=args.text
    )
    console.out(f"annotation {annotation_id} for run {args.run_id}")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        parser = _parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help
            return int(exc.code or 0)
        if args.command == "build":
            return _build(args)
        if args.command == "push":
            return _push(args)
        if args.command == "annotate":
            return _annotate(args)
        raise UsageError("usage: soak dashboards build|push|annotate (see --help)")
    except SoakwatchError as exc:
        console.error(f"soak dashboards: {exc}")
        return exc.exit_code
