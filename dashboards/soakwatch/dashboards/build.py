"""The Grafana dashboards, generated from code with Grafana's own typed builders
(grafana-foundation-sdk, generated from Grafana's dashboard schema).

Why code and not hand-kept JSON: the panels query the series that the exporter and the load
driver publish and the recording rules that ``soak rules prometheus`` generates, and the panels
draw the soak rules' thresholds in their units and name their windows (``build_all(rules)``,
``soak dashboards build --rules FILE``). Built here from the same names (``soakwatch.rules``) they
cannot drift apart, a panel is a few lines instead of a hundred, and a change shows as a small
diff in review. The JSON is committed (``dashboards/soakwatch/dashboards/*.json``) so Grafana
provisioning and ``soak dashboards push`` need no build step; a test fails when it is stale.

Two dashboards:
- ``soak-overview``: every service of a run side by side (``service`` multi-select, ``run_id``)
  — memory and its slope, restarts, GC, pools, probes; the load (rate, p50/p95/p99, errors, open
  connections); run annotations.
- ``soak-service``: one service in detail, the target of the alerts' dashboard links.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import prometheus as prom
from grafana_foundation_sdk.builders import stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

from soakwatch.rules import DEFAULT_RULES_PATH, RuleSet, alerting, load_rules, rule_set_names

__all__ = [
    "DASHBOARDS_DIR",
    "OVERVIEW_UID",
    "SERVICE_UID",
    "PanelSpec",
    "Query",
    "build_all",
    "overview",
    "render",
    "render_configmap",
    "service_drilldown",
    "write_all",
]

DASHBOARDS_DIR = Path(__file__).resolve().parent
OVERVIEW_UID = alerting.OVERVIEW_DASHBOARD_UID
SERVICE_UID = alerting.SERVICE_DASHBOARD_UID
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
TAGS = ["soakwatch", "soak"]
# The exporter's series always carry ``service``.
SERVICES = 'service=~"$service"'
# The load driver's series (and recording rules summed by scenario, and alerts of such rules)
# carry ``service`` only when the scrape gives the driver's target one (one driver per service):
# then they are filtered by it; without it they belong to every service and always match.
SERVICE_IF_LABELLED = 'service=~"$service|"'
# Series carry no run id: a run is the time during which ``soak_run_info{run_id}`` is 1. A panel
# shows its series while a selected run is in progress, or while no run is (the exporter alone):
# what was measured while another run was in progress is left out.
RUN_GATE = 'and on () (soak_run_info{run_id=~"$run_id"} or on () absent(soak_run_info))'
# Alerts copy run_id from soak_run_info (none outside a run), and service from per-service rules.
FIRING_ALERTS = (
    f'ALERTS{{alertstate="firing", soak_rule!="", {SERVICE_IF_LABELLED}, run_id=~"$run_id|"}}'
)


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class PanelSpec:
    """One panel: its stable id (unique in its dashboard: links and ``viewPanel`` use it), what
    it shows (queries), in which unit, how wide (of 24 columns)."""

    panel_id: int
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    description: str = ""
    kind: str = "timeseries"  # or "stat"
    width: int = 12
    height: int = 8
    threshold: float | None = None  # a red line (timeseries) or red from this value (stat)
    min_value: float | None = None


@dataclass(frozen=True)
class RowSpec:
    panel_id: int
    title: str
    panels: tuple[PanelSpec, ...]
    collapsed: bool = False


@dataclass(frozen=True)
class DashboardSpec:
    uid: str
    title: str
    description: str
    rows: tuple[RowSpec, ...]
    service_multi: bool = True
    links_to: tuple[str, ...] = field(default_factory=tuple)


# -- queries ------------------------------------------------------------------------------------
def gated(expr: str) -> str:
    """``expr`` limited to the selected runs' time (see RUN_GATE)."""
    return f"{expr}\n{RUN_GATE}"


def _quantiles(metric: str, by: str, selector: str) -> tuple[Query, ...]:
    return tuple(
        Query(
            gated(
                f"histogram_quantile({q}, sum by (le, {by}) "
                f"(rate({metric}_bucket{{{selector}}}[$__rate_interval])))"
            ),
            f"p{round(q * 100)} {{{{{by}}}}}",
        )
        for q in (0.5, 0.95, 0.99)
    )


def _number(value: float) -> str:
    return f"{value:.15g}"


def _rule(rules: RuleSet, kind: str, metric: str, role: str | None = None) -> Any:
    """The first enabled rule of ``kind`` over ``metric`` (in ``role`` when given: the error
    ratio and the throughput both read soak_load_requests_total). None: the panel, or its line,
    is left out."""
    for rule in rules.rules.values():
        if not rule.enabled or rule.kind != kind:
            continue
        selectors = [rule.metric(role)] if role is not None else list(rule.metrics.values())
        if any(s is not None and s.metric == metric for s in selectors):
            return rule
    return None


def _limit_text(rule: Any, unit: str | None = None) -> str:
    """``< 2 MB/h``: how the rule's figure must relate to its threshold to pass."""
    shown_unit = rule.unit if unit is None else unit
    threshold = rule.threshold if unit is None else rule.threshold_base
    suffix = "" if shown_unit in ("ratio", "count") else f" {shown_unit}"
    return f"{rule.comparison} {_number(threshold)}{suffix}"


def _memory_panels(rules: RuleSet, *, detail: bool) -> tuple[PanelSpec, ...]:
    growth = _rule(rules, "slope", "soak_process_resident_memory_bytes", "value")
    memory_queries = [
        Query(gated(f"soak_process_resident_memory_bytes{{{SERVICES}}}"), "RSS {{service}}"),
        Query(gated(f"soak_process_unique_memory_bytes{{{SERVICES}}}"), "USS {{service}}"),
    ]
    if detail:
        memory_queries.append(
            Query(gated(f"soak_process_virtual_memory_bytes{{{SERVICES}}}"), "virtual {{service}}")
        )
    panels = [
        PanelSpec(
            11,
            "Memory",
            tuple(memory_queries),
            unit="bytes",
            description="Resident (RSS) and unique (USS) memory of the watched process.",
        )
    ]
    if growth is not None:
        smoothed = alerting.record_name(growth.name, alerting.STAGE_SMOOTHED)
        slope = alerting.record_name(growth.name, alerting.STAGE_SLOPE)
        window = alerting.prometheus_duration(growth.window_seconds)
        fit = alerting.prometheus_duration(growth.alert.range_seconds)
        # The recorded slope is in bytes/hour; shown in the rule's own unit (MB/h by default),
        # so the axis, the tooltip and the red line read like the rule.
        panels.append(
            PanelSpec(
                12,
                f"Memory growth ({growth.unit}, slope of the GC troughs)",
                (
                    Query(
                        gated(f"{slope}{{{SERVICES}}} / {_number(growth.unit_factor)}"),
                        "{{service}}",
                    ),
                ),
                unit=f"suffix:{growth.unit}",
                description=(
                    f"How fast memory grows, in {growth.unit}: deriv() over {fit} of the "
                    f"{window} minimum of RSS (the troughs after each garbage collection), "
                    f"from the recording rules of the {growth.name} rule. The red line is its "
                    f"limit ({_limit_text(growth)}); the alert waits until the process has "
                    f"lived the warm-up, {fit} and {window}."
                ),
                threshold=growth.threshold,
            )
        )
        if detail:
            panels.append(
                PanelSpec(
                    13,
                    "Memory troughs (what the slope is fitted to)",
                    (
                        Query(gated(f"{smoothed}{{{SERVICES}}}"), "trough {{service}}"),
                        Query(gated(f"soak_process_resident_memory_bytes{{{SERVICES}}}"), "RSS"),
                    ),
                    unit="bytes",
                    description=f"The {window} minimum of RSS (the {growth.name} rule's "
                    "window) beside RSS itself.",
                )
            )
    return tuple(panels)


def _process_panels() -> tuple[PanelSpec, ...]:
    return (
        PanelSpec(
            31,
            "CPU",
            (
                Query(
                    gated(
                        f"sum by (service, mode) "
                        f"(rate(soak_process_cpu_seconds_total{{{SERVICES}}}[$__rate_interval]))"
                    ),
                    "{{service}} {{mode}}",
                ),
            ),
            unit="percentunit",
            width=8,
        ),
        PanelSpec(
            32,
            "Threads",
            (Query(gated(f"soak_process_threads{{{SERVICES}}}"), "{{service}}"),),
            width=8,
        ),
        PanelSpec(
            33,
            "Open file descriptors",
            (Query(gated(f"soak_process_open_fds{{{SERVICES}}}"), "{{service}}"),),
            width=8,
        ),
    )


def _restart_panels(rules: RuleSet) -> tuple[PanelSpec, ...]:
    restarts = _rule(rules, "increase", "soak_process_restarts_total", "value")
    # Counts are whole: the first failing count of "<= 0" is 1 (a stat turns red from it).
    red_from = None
    if restarts is not None:
        red_from = restarts.threshold_base + (1 if restarts.comparison == "<=" else 0)
    return (
        PanelSpec(
            4,
            "Restarts in range",
            (
                Query(
                    gated(
                        f"max by (service) (increase(soak_process_restarts_total{{{SERVICES}}}"
                        "[$__range]))"
                    ),
                    "{{service}}",
                ),
            ),
            kind="stat",
            width=6,
            height=4,
            threshold=red_from,
            description=(
                f"Red when the {restarts.name} rule fails ({_limit_text(restarts)})."
                if restarts is not None
                else ""
            ),
        ),
        PanelSpec(
            5,
            "Process up",
            (Query(gated(f"soak_process_up{{{SERVICES}}}"), "{{service}}"),),
            kind="stat",
            width=6,
            height=4,
        ),
    )


def _ratio_rule_query(rule: Any, selector: str, legend: str) -> Query:
    """The rule's own recorded ratio, over its alert range: what the alert judges."""
    record = alerting.record_name(rule.name, alerting.STAGE_RATIO)
    window = alerting.prometheus_duration(rule.alert.range_seconds)
    return Query(gated(f"{record}{{{selector}}}"), f"{legend} over {window} ({rule.name})")


def _gc_panels(rules: RuleSet) -> tuple[PanelSpec, ...]:
    efficiency = _rule(rules, "counter_ratio", "soak_gc_examined_objects_total", "denominator")
    queries = [
        Query(
            gated(
                f"sum by (service) (rate(soak_gc_collected_objects_total{{{SERVICES}}}"
                "[$__rate_interval]))\n"
                f"/ sum by (service) (rate(soak_gc_examined_objects_total{{{SERVICES}}}"
                "[$__rate_interval]))"
            ),
            "{{service}}",
        ),
    ]
    description = "Objects collected per object examined by the garbage collector."
    if efficiency is not None:
        queries.append(_ratio_rule_query(efficiency, SERVICES, "{{service}}"))
        description += (
            f" The red line is the {efficiency.name} rule's limit ({_limit_text(efficiency)}), "
            f"which its alert judges over "
            f"{alerting.prometheus_duration(efficiency.alert.range_seconds)}."
        )
    return (
        PanelSpec(
            41,
            "GC collections",
            (
                Query(
                    gated(
                        f"sum by (service, generation) "
                        f"(rate(soak_gc_collections_total{{{SERVICES}}}[$__rate_interval]))"
                    ),
                    "{{service}} gen {{generation}}",
                ),
            ),
            unit="ops",
            width=8,
        ),
        PanelSpec(
            42,
            "GC efficiency (collected / examined)",
            tuple(queries),
            unit="percentunit",
            width=8,
            description=description,
            threshold=efficiency.threshold_base if efficiency is not None else None,
            min_value=0,
        ),
        PanelSpec(
            43,
            "GC pauses",
            _quantiles("soak_gc_pause_seconds", "service", SERVICES),
            unit="s",
            width=8,
        ),
    )


def _pool_and_probe_panels() -> tuple[PanelSpec, ...]:
    return (
        PanelSpec(
            51,
            "Connection pools",
            (
                Query(
                    gated(f"soak_pool_connections{{{SERVICES}}}"),
                    "{{service}} {{pool}} {{state}}",
                ),
            ),
            description="TCP connections from the process to each configured endpoint "
            "(sidecar), or what an in-process pool reports.",
        ),
        PanelSpec(
            52,
            "Probes",
            (
                Query(gated(f"soak_probe_success{{{SERVICES}}}"), "{{service}} {{probe}} up"),
                Query(
                    gated(f"soak_probe_duration_seconds{{{SERVICES}}}"),
                    "{{service}} {{probe}} seconds",
                ),
            ),
            description="1 = the last probe succeeded; its duration in seconds.",
        ),
    )


LOAD_SERVICE_NOTE = (
    " Load series carry a service only when the scrape labels the driver's target with one; "
    "without it they are shown for every service."
)


def _load_panels(rules: RuleSet) -> tuple[PanelSpec, ...]:
    errors = _rule(rules, "counter_ratio", "soak_load_requests_total", "denominator")
    load = SERVICE_IF_LABELLED
    error_queries = [
        Query(
            gated(
                f'sum by (scenario) (rate(soak_load_requests_total{{outcome!="ok", {load}}}'
                "[$__rate_interval]))\n"
                f"/ sum by (scenario) (rate(soak_load_requests_total{{{load}}}"
                "[$__rate_interval]))"
            ),
            "{{scenario}}",
        ),
    ]
    error_description = "Requests whose outcome is not ok, per request."
    if errors is not None:
        error_queries.append(_ratio_rule_query(errors, load, "{{scenario}}"))
        error_description += (
            f" The red line is the {errors.name} rule's limit "
            f"({_limit_text(errors, 'ratio')} of requests), which its alert judges over "
            f"{alerting.prometheus_duration(errors.alert.range_seconds)}."
        )
    return (
        PanelSpec(
            61,
            "Request rate",
            (
                Query(
                    gated(
                        "sum by (scenario, outcome) "
                        f"(rate(soak_load_requests_total{{{load}}}[$__rate_interval]))"
                    ),
                    "{{scenario}} {{outcome}}",
                ),
            ),
            unit="reqps",
            description="Requests per second by scenario and outcome." + LOAD_SERVICE_NOTE,
        ),
        PanelSpec(
            62,
            "Latency p50 / p95 / p99",
            _quantiles("soak_load_request_duration_seconds", "scenario", load),
            unit="s",
            description="From the load driver's histograms, measured from when each request "
            "was due (no coordinated omission)." + LOAD_SERVICE_NOTE,
        ),
        PanelSpec(
            63,
            "Error ratio",
            tuple(error_queries),
            unit="percentunit",
            description=error_description + LOAD_SERVICE_NOTE,
            threshold=errors.threshold_base if errors is not None else None,
            min_value=0,
        ),
        PanelSpec(
            64,
            "Open connections",
            (Query(gated(f"sum by (kind) (soak_load_open_connections{{{load}}})"), "{{kind}}"),),
            description="Connections the load driver holds open, by kind." + LOAD_SERVICE_NOTE,
        ),
    )


def _latency_rule_panels(rules: RuleSet) -> tuple[PanelSpec, ...]:
    latency = _rule(rules, "quantile_change", "soak_load_request_duration_seconds")
    if latency is None:
        return ()
    current = alerting.record_name(latency.name, alerting.STAGE_QUANTILE)
    baseline = alerting.record_name(latency.name, alerting.STAGE_BASELINE)
    window = alerting.prometheus_duration(latency.window_seconds)
    warmup = alerting.prometheus_duration(latency.warmup_seconds)
    floor = (
        f" and by at least {latency.min_increase_seconds * 1000:g} ms"
        if latency.min_increase_seconds
        else ""
    )
    load = SERVICE_IF_LABELLED
    return (
        PanelSpec(
            65,
            f"p{round((latency.quantile or 0.95) * 100)} now vs the first {window} after "
            f"the {warmup} warm-up",
            (
                Query(gated(f"{current}{{{load}}}"), "now {{scenario}}"),
                Query(gated(f"{baseline}{{{load}}}"), "baseline {{scenario}}"),
            ),
            unit="s",
            description=f"Both over {window}, from the recording rules of the {latency.name} "
            f"rule; its alert fires when now exceeds the baseline by more than "
            f"{latency.threshold:g} {latency.unit}{floor}.",
            width=24,
        ),
    )


def _summary_panels() -> tuple[PanelSpec, ...]:
    return (
        PanelSpec(
            2,
            "Firing soak alerts",
            (Query(f"count({FIRING_ALERTS}) or vector(0)", "firing"),),
            kind="stat",
            width=6,
            height=4,
            threshold=1,
            description="Alerts of the soak rules for the selected services and runs (an "
            "alert fired outside a run carries no run id and is always counted).",
        ),
        PanelSpec(
            3,
            "Run",
            (Query('soak_run_info{run_id=~"$run_id"}', "{{run_id}} ({{profile}})"),),
            kind="stat",
            width=6,
            height=4,
        ),
    )


# -- the two dashboards -------------------------------------------------------------------------
def _rules_note(rules: RuleSet) -> str:
    source = Path(rules.source).resolve()
    packaged = {path.resolve(): name for name, path in rule_set_names().items()}
    if source == DEFAULT_RULES_PATH.resolve():
        return " Thresholds and windows: the packaged soak rules."
    if source in packaged:
        return f" Thresholds and windows: the packaged {packaged[source]!r} rules."
    return f" Thresholds and windows: {source.name}."


def overview_spec(rules: RuleSet) -> DashboardSpec:
    return DashboardSpec(
        uid=OVERVIEW_UID,
        title="Soak overview",
        description="Every watched service and the load of a soak run." + _rules_note(rules),
        rows=(
            RowSpec(1, "Run", (*_summary_panels(), *_restart_panels(rules))),
            RowSpec(10, "Memory", _memory_panels(rules, detail=False)),
            RowSpec(40, "Garbage collector", _gc_panels(rules)),
            RowSpec(50, "Pools and probes", _pool_and_probe_panels()),
            RowSpec(60, "Load", (*_load_panels(rules), *_latency_rule_panels(rules))),
        ),
        links_to=(SERVICE_UID,),
    )


def service_spec(rules: RuleSet) -> DashboardSpec:
    return DashboardSpec(
        uid=SERVICE_UID,
        title="Soak service",
        description="One watched service in detail: where the soak alerts link to."
        + _rules_note(rules),
        rows=(
            RowSpec(1, "Process", (*_restart_panels(rules), *_summary_panels())),
            RowSpec(10, "Memory", _memory_panels(rules, detail=True)),
            RowSpec(30, "CPU, threads, descriptors", _process_panels()),
            RowSpec(40, "Garbage collector", _gc_panels(rules)),
            RowSpec(50, "Pools and probes", _pool_and_probe_panels()),
            RowSpec(
                60,
                "Load against the service",
                (*_load_panels(rules), *_latency_rule_panels(rules)),
                collapsed=False,
            ),
        ),
        service_multi=False,
        links_to=(OVERVIEW_UID,),
    )


def _target(query: Query, ref_id: str) -> prom.Dataquery:
    # The SDK's builders return typing.Self, which mypy for Python 3.10 reads as Any.
    target: prom.Dataquery = prom.Dataquery().expr(query.expr).ref_id(ref_id).datasource(DATASOURCE)
    if query.legend:
        target = target.legend_format(query.legend)
    return target


def _enum(member: Any) -> Any:
    """An SDK enum member as the builders take it. The SDK's enums are ``enum.StrEnum``
    (Python 3.11), which mypy, checking for 3.10, sees as plain ``str``."""
    return member


def _stat() -> Any:
    return (
        stat.Panel()
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .graph_mode(common.BigValueGraphMode.AREA)
        .color_mode(common.BigValueColorMode.VALUE)
        .justify_mode(common.BigValueJustifyMode.AUTO)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .orientation(common.VizOrientation.AUTO)
    )


def _timeseries() -> Any:
    return (
        timeseries.Panel()
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(_enum(common.LegendDisplayMode.LIST))
            .placement(_enum(common.LegendPlacement.BOTTOM))
            .show_legend(True)
            .calcs([])
        )
        .tooltip(
            common_builders.VizTooltipOptions()
            .mode(_enum(common.TooltipDisplayMode.MULTI))
            .sort(_enum(common.SortOrder.DESCENDING))
        )
        .line_width(1)
        .fill_opacity(10)
        .span_nulls(False)
    )


def _panel(spec: PanelSpec) -> Any:
    builder: Any = _stat() if spec.kind == "stat" else _timeseries()
    builder = (
        builder.id(spec.panel_id)
        .title(spec.title)
        .datasource(DATASOURCE)
        .unit(spec.unit)
        .span(spec.width)
        .height(spec.height)
    )
    if spec.description:
        builder = builder.description(spec.description)
    if spec.min_value is not None:
        builder = builder.min(spec.min_value)
    for index, query in enumerate(spec.queries):
        builder = builder.with_target(_target(query, chr(ord("A") + index)))
    if spec.threshold is not None:
        builder = builder.thresholds(
            dash.ThresholdsConfig()
            .mode(_enum(model.ThresholdsMode.ABSOLUTE))
            .steps(
                [
                    model.Threshold(value=None, color="green"),
                    model.Threshold(value=spec.threshold, color="red"),
                ]
            )
        )
        if spec.kind == "timeseries":
            builder = builder.thresholds_style(
                common_builders.GraphThresholdsStyleConfig().mode(
                    _enum(common.GraphTresholdsStyleMode.LINE)
                )
            )
    return builder


def _variables(spec: DashboardSpec) -> list[Any]:
    datasource = dash.DatasourceVariable("datasource").label("Data source").type("prometheus")
    service = (
        dash.QueryVariable("service")
        .label("Service")
        .datasource(DATASOURCE)
        .query("label_values(soak_process_resident_memory_bytes, service)")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
    )
    if spec.service_multi:
        service = service.multi(True).include_all(True).all_value(".*")
    run_id = (
        dash.QueryVariable("run_id")
        .label("Run")
        .datasource(DATASOURCE)
        .query("label_values(soak_run_info, run_id)")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        # "All" expands to every run id (no custom all-value): the run annotations match tags
        # literally, so a regex like ".*" would find none.
        .multi(True)
        .include_all(True)
    )
    return [datasource, service, run_id]


def _annotations() -> list[Any]:
    return [
        # `soak dashboards annotate` (and `mark_run` for `soak run`) tag run start/end with the
        # run id (and "soakwatch").
        dash.AnnotationQuery()
        .name("Soak runs")
        .datasource(model.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
        .enable(True)
        .icon_color("blue")
        .target(
            dash.AnnotationTarget()
            .type("tags")
            # One tag per selected run (all of them for "All"): any of them marks a run.
            .tags(["$run_id"])
            .match_any(True)
            .limit(100)
        ),
        dash.AnnotationQuery()
        .name("Restarts")
        .datasource(DATASOURCE)
        .enable(True)
        .icon_color("orange")
        .expr(gated(f"changes(soak_process_start_time_seconds{{{SERVICES}}}[2m]) > 0")),
        dash.AnnotationQuery()
        .name("Soak alerts")
        .datasource(DATASOURCE)
        .enable(True)
        .icon_color("red")
        .expr(FIRING_ALERTS),
    ]


def _dashboard(spec: DashboardSpec) -> dash.Dashboard:
    builder: dash.Dashboard = (
        dash.Dashboard(spec.title)
        .uid(spec.uid)
        .description(spec.description)
        .tags(TAGS)
        .editable()
        .time("now-6h", "now")
        .refresh("1m")
        .timezone("utc")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .variables(_variables(spec))
        .annotations(_annotations())
    )
    for uid in spec.links_to:
        builder = builder.link(
            dash.DashboardLink("Soak service" if uid == SERVICE_UID else "Soak overview")
            .type(_enum(model.DashboardLinkType.LINK))
            .url(f"/d/{uid}")
            .include_vars(True)
            .keep_time(True)
        )
    for row in spec.rows:
        builder = builder.with_row(dash.Row(row.title).id(row.panel_id).collapsed(row.collapsed))
        for panel in row.panels:
            builder = builder.with_panel(_panel(panel))
    return builder


def overview(rules: RuleSet | None = None) -> dash.Dashboard:
    return _dashboard(overview_spec(rules or load_rules()))


def service_drilldown(rules: RuleSet | None = None) -> dash.Dashboard:
    return _dashboard(service_spec(rules or load_rules()))


def render(dashboard: dash.Dashboard) -> str:
    """The dashboard's JSON model as committed: two-space indent, trailing newline."""
    data = json.loads(json.dumps(dashboard.build(), cls=JSONEncoder))
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def build_all(rules: RuleSet | None = None) -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    rules = rules or load_rules()
    return {
        "soak-overview.json": render(overview(rules)),
        "soak-service.json": render(service_drilldown(rules)),
    }


def write_all(directory: Path = DASHBOARDS_DIR, rules: RuleSet | None = None) -> list[Path]:
    written = []
    for name, text in build_all(rules).items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def render_configmap(
    files: dict[str, str], *, name: str = "soakwatch-dashboards", namespace: str | None = None
) -> str:
    """The dashboards as a ConfigMap that Grafana's dashboard sidecar (kube-prometheus-stack,
    the Grafana Helm chart) imports: label ``grafana_dashboard: "1"``, folder annotation."""
    metadata: dict[str, Any] = {"name": name}
    if namespace:
        metadata["namespace"] = namespace
    metadata["labels"] = {"grafana_dashboard": "1", "app.kubernetes.io/part-of": "soakwatch"}
    metadata["annotations"] = {"grafana_folder": "Soak"}
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": files}

    class Dumper(yaml.SafeDumper):
        pass

    def literal(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
        style = "|" if "\n" in data else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)

    Dumper.add_representer(str, literal)
    header = "# Generated by `soak dashboards build --configmap FILE` from the dashboards JSON.\n"
    return header + yaml.dump(manifest, Dumper=Dumper, sort_keys=False, width=1_000_000)


def panels_of(data: dict[str, Any]) -> Sequence[dict[str, Any]]:
    """Every non-row panel of a dashboard JSON model (rows' nested panels included)."""
    out: list[dict[str, Any]] = []
    for panel in data.get("panels", []):
        if panel.get("type") == "row":
            out.extend(panel.get("panels", []))
        else:
            out.append(panel)
    return out
