"""``analyze()``: fetch what the rules need from a source, judge every rule, build the report.
The only function that touches a source; everything it calls after fetching is pure.

At fleet scale (more services than ``shard_services``, a source that lists label values) the
rules grouped by ``service`` are judged in shards of services, each in a worker process of
a bounded pool (``jobs``) that fetches only its services' series: memory stays bounded by a
shard and decoding overlaps on several cores (threads cannot: the decoding holds the GIL).
The rules not grouped by service (load scenarios) are fetched once, in this process, while
the workers run. The merged results are those of the unsharded analysis, in the same order."""

from __future__ import annotations

import contextlib
import copyreg
import io
import logging
import math
import multiprocessing
import os
import pickle
import signal
import sys
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from soakwatch.analyzer.attribution import attach_allocation_sites
from soakwatch.analyzer.baseline import baseline_results
from soakwatch.analyzer.evaluate import evaluate_rule, evaluate_sliding
from soakwatch.analyzer.report import Report, Result
from soakwatch.analyzer.series import Series, subject_of
from soakwatch.analyzer.sources import Source, sample_spacing
from soakwatch.errors import UsageError
from soakwatch.rules.model import LabelMatcher, MetricSelector, Rule, RuleSet, parse_selector

__all__ = ["analyze", "parse_label_selector"]

log = logging.getLogger(__name__)


def parse_label_selector(text: str | None) -> tuple[LabelMatcher, ...]:
    """``{service="api",env=~"st.*"}`` (braces optional) as label matchers; UsageError if bad."""
    if not text or not text.strip():
        return ()
    body = text.strip()
    if not body.startswith("{"):
        body = "{" + body + "}"
    try:
        return parse_selector("x" + body).matchers
    except ValueError as exc:
        raise UsageError(f"bad --selector {text!r}: {exc}") from None


# Services per shard over SHARD_RANGE_SECONDS (fewer over longer ranges, so a shard's samples
# stay bounded): 50 services x 48 h are about 1.6 M samples, some 150 MB at a worker's peak
# (1,000 x 48 h with two workers: 1.10 GB for the process tree with shards of 100, 1.00 GB
# with 50, the same time), and a fleet of 1,000 is twenty shards.
SHARD_SERVICES = 50
SHARD_RANGE_SECONDS = 48 * 3600.0
PR_SET_PDEATHSIG = 1  # prctl(2)
M_MMAP_THRESHOLD = -3  # mallopt(3)
MMAP_THRESHOLD_BYTES = 1 << 20
# Default worker processes: one per core, at most this many (each holds a shard's series).
MAX_DEFAULT_JOBS = 4
# A result's place among those of its rule (evaluate_rule's order): subjects with the primary
# metric, subjects seen only from their start time, services without the metric, and the one
# result of a rule with no series at all.
_WITH_DATA, _START_TIME_ONLY, _MISSING, _NO_SERIES = range(4)

Subject = tuple[tuple[str, str], ...]


@runtime_checkable
class ShardableSource(Protocol):
    """A source that can list the services it holds, so the analysis can shard by them, and
    read a shard at the sample interval of the whole fleet (:class:`PrometheusSource`)."""

    def label_values(
        self, label: str, selectors: Iterable[str], start: float, end: float
    ) -> list[str]: ...

    def share_sample_seconds(
        self,
        selector: MetricSelector,
        like: MetricSelector,
        start: float,
        end: float,
        *,
        suffix: str = "",
    ) -> None: ...


# Only the memory series needs every sample (its GC troughs); counters, gauges judged by their
# spread and start times are read at a coarser step of the range / COARSE_POINTS.
COARSE_POINTS = 1440


def _queries(
    rule: Rule,
    start: float,
    end: float,
    extra: tuple[LabelMatcher, ...],
    shard: _Shard | None = None,
) -> dict[str, tuple[str, MetricSelector, str, float | None]]:
    """role -> (cache key, selector, suffix, step) of what ``rule`` needs (of the services of
    ``shard`` only, when given)."""
    coarse = (end - start) / COARSE_POINTS
    out = {}
    for role, selector in rule.metrics.items():
        suffix = "_bucket" if rule.kind == "quantile_change" else ""
        matchers = selector.matchers + extra
        if shard is not None:
            matchers += (shard.primary if role == _primary_role(rule) else shard.others,)
        merged = MetricSelector(selector.metric, matchers)
        step = None if (rule.kind == "slope" and role == "value") else coarse
        key = f"{merged.promql(suffix=suffix)}@{step}"
        out[role] = (key, merged, suffix, step)
    return out


def _note_non_finite(result: Result, set_aside: list[tuple[Mapping[str, str], int]]) -> Result:
    """``result`` with ``details.non_finite_samples`` and a word in its reason when series of
    its subject had NaN or infinite samples, which the rule did not see."""
    count = sum(
        dropped
        for labels, dropped in set_aside
        if all(labels.get(key, "") == value for key, value in result.subject.items())
    )
    if not count:
        return result
    noun = "sample" if count == 1 else "samples"
    return replace(
        result,
        reason=f"{result.reason}; {count} NaN or infinite {noun} ignored",
        details={**result.details, "non_finite_samples": count},
    )


def _note_sampling(
    result: Result, series: list[Series], spacings: dict[int, float | None]
) -> Result:
    """``result`` with ``details.sample_seconds``: the sample interval of the series it judged
    (those of its subject), as fetched: the query step from Prometheus, the recorded interval
    from a run directory. ``spacings``: each times array's interval by its ``id``, for the
    results of one rule (whose series all live meanwhile): series fetched at one step share
    their times, and a fleet's results read it once instead of once per service."""
    found = []
    for s in series:
        if all(s.labels.get(key, "") == value for key, value in result.subject.items()):
            key = id(s.t)
            if key not in spacings:
                spacings[key] = sample_spacing([s.t])
            found.append(spacings[key])
    spacing = min((x for x in found if x is not None), default=None)
    if spacing is None or "sample_seconds" in result.details:
        return result
    return replace(result, details={**result.details, "sample_seconds": spacing})


def _by_service(series: list[Series]) -> dict[str, list[Series]]:
    """``series`` by their ``service`` label ("" without one)."""
    out: dict[str, list[Series]] = {}
    for s in series:
        out.setdefault(s.labels.get("service", ""), []).append(s)
    return out


def _candidates(
    result: Result, series: list[Series], by_service: Mapping[str, list[Series]]
) -> list[Series]:
    """The series among which ``result``'s own are: those of its service when it names one
    (a lookup instead of a scan of the fleet for each result)."""
    service = result.subject.get("service")
    return series if service is None else list(by_service.get(service, ()))


def _primary_role(rule: Rule) -> str:
    # ratio_change: the numerator (CPU) carries the subject's labels, the requests may not
    primary = {"counter_ratio": "denominator", "ratio_change": "numerator"}
    return {**primary, "quantile_change": "histogram"}.get(rule.kind, "value")


def _primary(rule: Rule, data: Mapping[str, list[Series]]) -> list[Series]:
    return data.get(_primary_role(rule), [])


@dataclass(frozen=True)
class _Shard:
    """The matchers that pick a shard's services: ``primary`` for the series that make a
    rule's subjects, ``others`` (the same services or none: load requests, say, carry no
    ``service`` label and count for every service) for the rest."""

    primary: LabelMatcher
    others: LabelMatcher


def _shards(services: list[str], size: int) -> list[_Shard]:
    """``services`` in contiguous shards of about ``size`` (sorted, so the shards' results
    follow each other as the unsharded ones do); the first also takes the series without a
    ``service`` label, so none is silently left out."""
    count = max(1, math.ceil(len(services) / size))
    per = math.ceil(len(services) / count)
    out = []
    for index in range(count):
        alternatives = "|".join(
            _regex_literal(s) for s in services[index * per : (index + 1) * per]
        )
        out.append(
            _Shard(
                LabelMatcher("service", "=~", ("|" if index == 0 else "") + alternatives),
                LabelMatcher("service", "=~", "|" + alternatives),
            )
        )
    return out


def _regex_literal(text: str) -> str:
    """``text`` as a regular expression matching itself in RE2 (Prometheus, VictoriaMetrics)
    and Python's re alike."""
    return "".join("\\" + c if c in "\\.+*?()|[]{}^$" else c for c in text)


@dataclass
class _Judged:
    """Judging some rules on a source: per rule, each result with its place and group subject
    (for the merge of shards), and its sliding-window results; the services seen."""

    results: dict[str, list[tuple[int, Subject, Result]]] = field(default_factory=dict)
    sliding: dict[str, list[Result]] = field(default_factory=dict)
    services: set[str] = field(default_factory=set)


def _placed(
    rule: Rule, data: Mapping[str, list[Series]], results: list[Result]
) -> list[tuple[int, Subject, Result]]:
    """``results`` of ``rule`` each with its place in evaluate_rule's order and its group
    subject (the subject without the labels added to tell series apart)."""
    with_data = {subject_of(s.labels, rule.group_by) for s in _primary(rule, data)}
    start_only = (
        {subject_of(s.labels, rule.group_by) for s in data.get("start_time", [])}
        if rule.kind == "increase"
        else set()
    )
    out = []
    for result in results:
        group = subject_of(result.subject, rule.group_by)
        if group in with_data:
            place = _WITH_DATA
        elif group in start_only:
            place = _START_TIME_ONLY
        elif result.subject:
            place = _MISSING
        else:
            place = _NO_SERIES
        out.append((place, group, result))
    return out


def _judge(
    source: Source,
    rules: RuleSet,
    start: float,
    end: float,
    extra: tuple[LabelMatcher, ...],
    *,
    parallel: int,
    shard: _Shard | None = None,
    known_services: Iterable[str] | None = None,
    sliding_window_seconds: float | None = None,
) -> _Judged:
    """Fetch and judge ``rules`` (of ``shard``'s services only, when given). The services of
    rules grouped by ``service`` without data are those of ``known_services`` (default: the
    services seen in the fetched series)."""
    plans = {name: _queries(rule, start, end, extra, shard) for name, rule in rules.rules.items()}
    wanted = {
        key: (sel, suffix, step)
        for plan in plans.values()
        for key, sel, suffix, step in plan.values()
    }

    def fetch(item: tuple[str, tuple[MetricSelector, str, float | None]]) -> list[Series]:
        _key, (sel, suffix, step) = item
        return source.fetch(sel, start, end, suffix=suffix, step_seconds=step)

    # queries overlap: the server works on one while this process decodes another
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        answers = dict(zip(wanted, pool.map(fetch, wanted.items()), strict=True))
    # NaN and infinities, as both sources return them, are set aside once for every rule
    cleaned = {key: [s.finite() for s in series] for key, series in answers.items()}
    del answers
    fetched = {
        name: {role: [s for s, _ in cleaned[key]] for role, (key, _s, _x, _t) in plan.items()}
        for name, plan in plans.items()
    }
    set_aside = {
        name: [
            (s.labels, dropped)
            for key, _s, _x, _t in plan.values()
            for s, dropped in cleaned[key]
            if dropped
        ]
        for name, plan in plans.items()
    }
    del cleaned
    seen = {
        s.labels["service"]
        for name, data in fetched.items()
        if "service" in rules.rules[name].group_by
        for series in data.values()
        for s in series
        if s.labels.get("service")
    }
    known = sorted(seen if known_services is None else set(known_services))
    judged = _Judged(services=seen)
    for name, rule in rules.rules.items():
        primary = _primary(rule, fetched[name])
        by_service = _by_service(primary)
        spacings: dict[int, float | None] = {}
        results = [
            _note_sampling(
                _note_non_finite(r, set_aside[name]),
                _candidates(r, primary, by_service),
                spacings,
            )
            for r in evaluate_rule(rule, fetched[name], start, end, known)
        ]
        results = attach_allocation_sites(
            rule, results, source, start, end, extra + ((shard.primary,) if shard else ())
        )
        judged.results[name] = _placed(rule, fetched[name], results)
        window = sliding_window_seconds or rule.sliding_window_seconds
        judged.sliding[name] = (
            [
                _note_sampling(
                    _note_non_finite(r, set_aside[name]),
                    _candidates(r, primary, by_service),
                    spacings,
                )
                for r in evaluate_sliding(rule, fetched[name], start, end, window, known)
            ]
            if window
            else []
        )
        del fetched[name]  # this rule's series are no longer needed
    return judged


def _read_only(items: dict[Any, Any]) -> Mapping[Any, Any]:
    """The read-only mapping of ``items``, as the rules model keeps them (unpickling)."""
    return MappingProxyType(items)


def _dumps(payload: object) -> bytes:
    """``payload`` pickled for a worker process (rule sets hold read-only mappings, which the
    standard pickler refuses)."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = {
        **copyreg.dispatch_table,
        MappingProxyType: lambda m: (_read_only, (dict(m),)),
    }
    pickler.dump(payload)
    return buffer.getvalue()


def _start_worker(parent: int) -> None:
    """Worker initializer: end when the analysing process ``parent`` does, even killed (on
    Linux, through the parent-death signal), instead of judging a shard for nobody; and
    allocate every block of MMAP_THRESHOLD_BYTES or more (answers, a shard's big arrays)
    as its own mapping, returned to the system when freed. glibc's default threshold rises
    to the largest block freed (up to 32 MB), after which such blocks come from the heap,
    which fragments: a worker grew from 110 to 200 MB over six shards, with it 95-125 MB."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        with contextlib.suppress(AttributeError):  # a libc other than glibc (musl)
            libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    if os.getppid() != parent:  # it ended before the signal was asked for
        os._exit(1)


def _judge_shard(payload: bytes) -> _Judged:
    """In a worker process: :func:`_judge` on one shard (its results hold no read-only
    mappings, so the pool's own pickling sends them back: one copy, not three), one query at
    a time: the workers are the parallelism, and threads decoding answers in a worker fight
    for its GIL and each take a malloc arena (1,000 x 48 h, two workers, four threads each:
    the workers' 19.1-19.8 CPU-s, 1.7-2.0 of them system; one thread: 16.6-18.0, 1.4-1.5)."""
    source, rules, start, end, extra, shard = pickle.loads(payload)
    judged = _judge(source, rules, start, end, extra, parallel=1, shard=shard)
    _release_freed_memory()
    return judged


def _release_freed_memory() -> None:
    """Give the heap this shard freed back to the system before the next shard (glibc keeps
    it, in one arena per fetching thread)."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None).malloc_trim(0)


def _merged(parts: list[list[tuple[int, Subject, Result]]]) -> list[Result] | None:
    """The results of one rule over every shard, in the unsharded order; None when a shard
    judged a subject without a ``service`` label (its figures would need every shard's
    series)."""
    placed = [item for part in parts for item in part]
    real = [item for item in placed if item[0] != _NO_SERIES]
    if not real:
        return [placed[0][2]] if placed else []
    if any(not dict(group).get("service") for _place, group, _r in real):
        return None
    return [r for _p, _g, r in sorted(real, key=lambda item: (item[0], item[1]))]


def _default_jobs() -> int:
    return max(1, min(os.cpu_count() or 1, MAX_DEFAULT_JOBS))


def _sharded(
    source: Source,
    rules: RuleSet,
    start: float,
    end: float,
    extra: tuple[LabelMatcher, ...],
    *,
    parallel: int,
    jobs: int,
    shard_services: int,
) -> dict[str, list[Result]] | None:
    """rule -> results of every rule of ``rules``, the rules grouped by ``service`` judged in
    shards of ``shard_services`` services by ``jobs`` worker processes; None when sharding
    does not apply (another kind of source, too few services, a service rule with sliding
    windows, series of a service rule without a service label)."""
    by_service = [n for n, r in rules.rules.items() if "service" in r.group_by]
    if (
        jobs < 2
        or not by_service
        or not isinstance(source, ShardableSource)
        or any(rules.rules[n].sliding_window_seconds for n in by_service)
    ):
        return None
    plans = {n: _queries(rules.rules[n], start, end, extra) for n in by_service}
    selectors = {
        sel.promql(suffix=suffix)
        for plan in plans.values()
        for _k, sel, suffix, _t in plan.values()
    }
    services = source.label_values("service", selectors, start, end)
    size = max(1, round(shard_services * min(1.0, SHARD_RANGE_SECONDS / (end - start))))
    if len(services) <= size:
        return None
    shards = _shards(services, size)
    service_rules = rules.select(by_service)
    other_rules = rules.select([n for n in rules.rules if n not in by_service])
    for name, whole in plans.items():
        rule = rules.rules[name]
        for shard in shards:
            # every role: the step of a coarse query also rests on the sample interval (a
            # series scraped every 5 min is read at 5 min), which must be the fleet's
            for role, (_k, sel, suffix, _t) in _queries(rule, start, end, extra, shard).items():
                source.share_sample_seconds(sel, whole[role][1], start, end, suffix=suffix)
    # spawn: this process may run threads (soak run, a test's servers), and a forked child
    # of a threaded process can deadlock; workers are its own children, so they can end with it
    context = multiprocessing.get_context("spawn")
    log.info("judging %d services in %d shards, %d processes", len(services), len(shards), jobs)
    pool = ProcessPoolExecutor(
        max_workers=min(jobs, len(shards)),
        mp_context=context,
        initializer=_start_worker,
        initargs=(os.getpid(),),
    )
    try:
        futures = [
            pool.submit(_judge_shard, _dumps((source, service_rules, start, end, extra, shard)))
            for shard in shards
        ]
        # meanwhile, the rules not grouped by service, once, here
        here = _judge(source, other_rules, start, end, extra, parallel=parallel)
        parts: list[_Judged] = [future.result() for future in futures]
    except BrokenProcessPool:
        # a worker died: killed for memory, or a script that calls analyze() without an
        # ``if __name__ == "__main__":`` guard (every worker imports the main module)
        pool.shutdown(wait=False, cancel_futures=True)
        log.warning("a worker process of the analysis died; judging in this process instead")
        return None
    except BaseException:
        # an error or Ctrl-C: the shards not started are dropped, the running not waited for
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    out: dict[str, list[Result]] = {}
    for name in rules.rules:
        if name not in by_service:
            out[name] = [r for _p, _g, r in here.results[name]] + here.sliding[name]
            continue
        merged = _merged([part.results[name] for part in parts])
        if merged is None:
            log.info("series without a service label: judging %s unsharded", name)
            return None
        out[name] = merged
    return out


def analyze(
    source: Source,
    ruleset: RuleSet,
    start: float,
    end: float,
    selector: str | None = None,
    only: list[str] | tuple[str, ...] | None = None,
    *,
    sliding_window_seconds: float | None = None,
    baselines: list[dict[str, Any]] | None = None,
    parallel: int = 4,
    jobs: int | None = None,
    shard_services: int = SHARD_SERVICES,
) -> Report:
    """Judge the rules of ``ruleset`` (or just those named in ``only``) on the series that
    ``source`` holds for [start, end] (Unix seconds), restricted by the label ``selector``
    (``'{service="api"}'``). Raises SourceError when the source cannot be read, ConfigError for
    an unknown rule name, UsageError for a bad selector or range. Up to ``parallel`` queries
    run at once in this process; a shard's worker runs its queries one at a time.

    ``jobs``: worker processes for a fleet of more than ``shard_services`` services (per 48 h
    of range: fewer over longer ranges; see the module; default: one per core, at most
    MAX_DEFAULT_JOBS; 1: none). The results are the same either way.

    ``sliding_window_seconds`` judges every rule on half-overlapping windows of that length as
    well (rules may set their own ``sliding_window``); ``baselines`` (earlier JSON reports,
    oldest first) enable the rules' ``baseline`` comparisons."""
    if not end > start:
        raise UsageError(f"the range is empty: start {start:.0f} is not before end {end:.0f}")
    extra = parse_label_selector(selector)
    rules = ruleset.select(only)
    by_rule = None
    if sliding_window_seconds is None:
        by_rule = _sharded(
            source,
            rules,
            start,
            end,
            extra,
            parallel=parallel,
            jobs=_default_jobs() if jobs is None else jobs,
            shard_services=max(1, shard_services),
        )
    if by_rule is None:
        judged = _judge(
            source,
            rules,
            start,
            end,
            extra,
            parallel=parallel,
            sliding_window_seconds=sliding_window_seconds,
        )
        by_rule = {
            name: [r for _p, _g, r in judged.results[name]] + judged.sliding[name]
            for name in rules.rules
        }
    results: list[Result] = []
    for name, rule in rules.rules.items():
        results += by_rule[name]
        if baselines:
            judged_here = [r for r in by_rule[name] if r.rule == name]
            results += baseline_results(rule, judged_here, baselines)
    return Report(
        start=start,
        end=end,
        source=source.description,
        rules_source=ruleset.source,
        rules_version=ruleset.version,
        results=results,
        generated_at=time.time(),
        selector=selector,
    )
