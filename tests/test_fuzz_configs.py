"""Seeded, time-bounded fuzzing of the four config loaders (exporter, load, rules, run): whatever
YAML a file holds, a loader returns a config or raises a SoakwatchError (exit 0 or 2 at the
CLI, never a traceback), and a password in the file never appears in the error.

The documents are real configs mutated at random (a value replaced by a scalar of any type, an
odd string, a URL or header carrying the password, a deep nest; a key dropped, misspelt or
added), documents built from each loader's own key names, and hostile YAML text (aliases,
tags, deep nesting). hypothesis runs derandomized: the same examples on every run."""

from __future__ import annotations

import copy
import subprocess
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from soakwatch.errors import SoakwatchError
from soakwatch.rules.model import DEFAULT_RULES_PATH

PASSWORD = "Pw-3xq9-fuzz"

FUZZ = settings(
    derandomize=True,
    max_examples=120,
    deadline=2000,  # ms per example: a loader that hangs fails the test, slowly
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)

# -- real configs, the seeds of the mutations ---------------------------------------------------
EXPORTER: dict[str, Any] = {
    "listen": "127.0.0.1:9464",
    "scan_interval": "5s",
    "detail_interval": "30s",
    "services": [
        {
            "name": "api",
            "match": {"cmdline": "gunicorn .*myapp:app"},
            "pools": [{"name": "postgres", "port": 5432, "host": "127.0.0.1"}],
            "probes": [
                {
                    "name": "health",
                    "kind": "http",
                    "target": "http://127.0.0.1:8000/health",
                    "headers": {"Authorization": f"Bearer {PASSWORD}"},
                    "expect_status": ["2xx", 301],
                    "timeout": "2s",
                },
                {
                    "name": "db",
                    "kind": "postgres",
                    "target": f"postgresql://soak:{PASSWORD}@127.0.0.1:5432/soak",
                },
                {"name": "cache", "kind": "redis", "target": f"redis://:{PASSWORD}@127.0.0.1:6379"},
                {"name": "port", "kind": "tcp", "target": "127.0.0.1:22"},
            ],
        },
        {"name": "worker", "match": {"pid": 1}},
    ],
}
LOAD: dict[str, Any] = {
    "duration": "10s",
    "ramp_up": "1s",
    "stop_grace": "2s",
    "scenarios": [
        {
            "kind": "http",
            "name": "api",
            "rate": "20/s",
            "endpoints": [
                {"url": "http://127.0.0.1:8080/a", "weight": 3},
                {
                    "url": "http://127.0.0.1:8080/b",
                    "method": "POST",
                    "body": "{}",
                    "headers": {"Authorization": f"Bearer {PASSWORD}"},
                },
            ],
        },
        {
            "kind": "websocket",
            "name": "ws",
            "url": "ws://127.0.0.1:8080/ws",
            "connections": 2,
            "auth": {"url": f"http://user:{PASSWORD}@127.0.0.1:9000/token"},
        },
        {
            "kind": "redis",
            "name": "cache",
            "url": f"redis://:{PASSWORD}@127.0.0.1:6379/0",
            "rate": "5/s",
            "statements": ["SET soak:{n} x", "GET soak:{n}"],
        },
        {
            "kind": "postgres",
            "name": "db",
            "url": f"postgresql://soak:{PASSWORD}@127.0.0.1:5432/soak",
            "rate": "5/s",
            "statements": ["SELECT 1"],
        },
    ],
}
RULES: dict[str, Any] = yaml.safe_load(DEFAULT_RULES_PATH.read_text(encoding="utf-8"))
RUN: dict[str, Any] = {
    "profile": "ci",
    "duration": "10m",
    "sampling_interval": "15s",
    "checks": [
        {"name": "api", "kind": "http", "target": "http://127.0.0.1:8080/health"},
        {"name": "db", "kind": "postgres", "target": f"postgresql://s:{PASSWORD}@127.0.0.1/s"},
        {"name": "auth", "kind": "tcp", "target": "127.0.0.1:9000", "required": False},
    ],
    "exporter": {"services": copy.deepcopy(EXPORTER["services"])},
    "load": {"scenarios": copy.deepcopy(LOAD["scenarios"][:2])},
    "scrape": [{"name": "gc", "url": f"http://u:{PASSWORD}@127.0.0.1:9465/metrics"}],
}
SEEDS = {"exporter": EXPORTER, "load": LOAD, "rules": RULES, "run": RUN}


def _keys(document: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(document, dict):
        for key, value in document.items():
            found.add(str(key))
            found |= _keys(value)
    elif isinstance(document, list):
        for item in document:
            found |= _keys(item)
    return found


KEYS = {name: sorted(_keys(seed)) for name, seed in SEEDS.items()}
SECRET_KEYS = ("password", "Authorization", "token", "secret")


def loader(name: str) -> Callable[[Path], Any]:
    if name == "exporter":
        from soakwatch.exporter.config import load_config as load_exporter

        return lambda path: load_exporter(path, environ={})
    if name == "load":
        from soakwatch.load.config import load_config as load_load

        return lambda path: load_load(path, environ={})
    if name == "rules":
        from soakwatch.rules import load_rules

        return load_rules
    from soakwatch.run.config import load_run_config

    return load_run_config


# -- what the documents are made of -------------------------------------------------------------
ODD_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\t",
        "\x00",
        "\n\n",
        "é\u202e",
        "💥",
        "${HOME}",
        "$healthy_url",
        "~",
        "null",
        "yes",
        "0x1F",
        "1e308",
        "-1e400",
        ".nan",
        "-.inf",
        "1_000",
        "0o17",
        "12:30:00",
        "2024-01-01",
        "99999999999999999999",
        "-0",
        "1h30",
        "5/fortnight",
        "http://",
        "http://[::1",
        "http://h:99999/",
        "unix:///tmp/x.sock",
        "a" * 5000,
        "(((((((((a*)*)*)*)*)*)*)*)*",
        "[unterminated",
        "\\",
        '"',
        "'",
        "{",
        "*",
        "&a",
        "!!python/object:os.system",
    ]
)
# A password where a reader can tell it is one: in a URL's userinfo or password= parameter (such
# a URL may land under any key), or as the value of a secret key.
SECRET_URLS = st.sampled_from(
    [
        f"http://soak:{PASSWORD}@127.0.0.1:8080/",
        f"https://soak:{PASSWORD}@127.0.0.1:99999/x",
        f"postgresql://soak:{PASSWORD}@db:5432/soak",
        f"postgresql://db/soak?password={PASSWORD}",
        f"redis://:{PASSWORD}@127.0.0.1:6379",
        f"redis://:{PASSWORD}@[::1:6379",
        f"ws://u:{PASSWORD}@127.0.0.1/ws",
        f"ftp://u:{PASSWORD}@host/",
        f"http://u:{PASSWORD}@:80/",
        f"u:{PASSWORD}@127.0.0.1:5432",
    ]
)
SECRET_VALUES = st.one_of(st.sampled_from([PASSWORD, f"Bearer {PASSWORD}"]), SECRET_URLS)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    ODD_TEXT,
)


def values(keys: list[str]) -> st.SearchStrategy[Any]:
    """Scalars, and lists and mappings of them keyed by the loader's keys or junk."""
    key = st.one_of(st.sampled_from(keys), st.text(max_size=8))
    return st.recursive(
        st.one_of(SCALARS, SECRET_URLS),
        lambda inner: st.one_of(
            st.lists(inner, max_size=4),
            st.dictionaries(key, inner, max_size=4),
        ),
        max_leaves=12,
    )


def _deep(levels: int, leaf: Any) -> Any:
    for index in range(levels):
        leaf = [leaf] if index % 2 else {"k": leaf}
    return leaf


def mutate(document: Any, keys: list[str], data: st.DataObject) -> Any:
    """One random change somewhere in (a copy of) ``document``."""
    root: dict[str, Any] = {"root": copy.deepcopy(document)}
    holder: Any = root
    slot: Any = "root"
    # walk down a random path
    for _step in range(data.draw(st.integers(0, 6), label="depth")):
        node = holder[slot]
        if isinstance(node, dict) and node:
            holder, slot = node, data.draw(st.sampled_from(sorted(node, key=str)), label="key")
        elif isinstance(node, list) and node:
            holder, slot = node, data.draw(st.integers(0, len(node) - 1), label="index")
        else:
            break
    action = data.draw(
        st.sampled_from(["replace", "secret", "drop", "typo", "add", "wrap", "nest"]),
        label="action",
    )
    if action == "replace":
        holder[slot] = data.draw(values(keys), label="value")
    elif action == "secret":
        holder[slot] = data.draw(SECRET_URLS, label="secret")
    elif action == "drop" and isinstance(holder, dict) and holder is not root:
        del holder[slot]
    elif action == "typo" and holder is not root and isinstance(slot, str) and slot:
        cut = data.draw(st.integers(0, len(slot) - 1), label="cut")
        holder[slot[:cut] + slot[cut + 1 :]] = holder.pop(slot)
    elif action == "add" and isinstance(holder[slot], dict):
        name = data.draw(st.one_of(st.sampled_from(keys + list(SECRET_KEYS)), st.text(max_size=6)))
        secret = name in SECRET_KEYS
        holder[slot][name] = data.draw(SECRET_VALUES if secret else values(keys), label="added")
    elif action == "wrap":
        holder[slot] = [holder[slot]]
    elif action == "nest":
        holder[slot] = _deep(data.draw(st.integers(50, 150), label="levels"), holder[slot])
    return root["root"]


def hostile_text(data: st.DataObject) -> str:
    """YAML that no dump of Python values writes: aliases, tags, deep nests, broken syntax."""
    levels = data.draw(st.sampled_from([99, 100, 101, 1000, 5000]), label="levels")
    return data.draw(
        st.sampled_from(
            [
                "[" * levels + "]" * levels,
                "{a: " * levels + "1" + "}" * levels,
                "".join(f"{'  ' * i}k:\n" for i in range(levels)),
                "a: &a [*a]",
                "a: &a {b: *a}",
                "a: &a [1]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                "d: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n",
                "a: !!python/object/apply:os.system [echo hi]",
                "a: !!binary not-base64",
                "a: !!timestamp 2024-99-99",
                "a: !!set {x, y}",
                "a: !!omap [x: 1, y: 2]",
                "a: !!int '99999999999999999999999999999999999999999999999999'",
                "? [a, b]\n: 1",
                "- a\n- b",
                "a: *undefined",
                "a: 1\na: 2",
                "--- 1\n--- 2",
                "\tkey: value",
                "key: 'unterminated",
                'key: "\\x"',
                f"password: {PASSWORD}\nlisten: [",
                f"services:\n  - name: api\n    match: {{cmdline: '{PASSWORD}[' }}\n",
                "n: " + "9" * 5000,
                "\ufeffduration: 1m",
            ]
        ),
        label="hostile",
    )


def assert_loads_or_config_error(name: str, path: Path) -> None:
    try:
        loader(name)(path)
    except SoakwatchError as exc:
        assert exc.exit_code == 2
        shown = "".join(traceback.format_exception_only(exc))
        assert PASSWORD not in shown, f"the password leaked: {shown}"
    # anything else propagates: the test fails with the loader's own traceback


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_the_seed_configs_are_valid(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(SEEDS[name]), encoding="utf-8")
    loader(name)(path)


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_a_mutated_config_loads_or_is_a_config_error_that_hides_the_password(
    tmp_path_factory: pytest.TempPathFactory, name: str
) -> None:
    folder = tmp_path_factory.mktemp(f"fuzz-{name}")
    keys = KEYS[name]

    @FUZZ
    @given(data=st.data())
    def check(data: st.DataObject) -> None:
        kind = data.draw(st.sampled_from(["mutated", "built", "hostile"]), label="kind")
        if kind == "mutated":
            text = yaml.safe_dump(mutate(SEEDS[name], keys, data), allow_unicode=True)
        elif kind == "built":
            document = data.draw(st.dictionaries(st.sampled_from(keys), values(keys), max_size=5))
            text = yaml.safe_dump(document, allow_unicode=True)
        else:
            text = hostile_text(data)
        path = folder / "config.yaml"
        path.write_text(text, encoding="utf-8")
        assert_loads_or_config_error(name, path)

    check()


# -- a handful through the real CLIs: the exit code mapping -----------------------------------
CLIS = {
    "exporter": ["soak-exporter", "--check", "--config"],
    "load": ["soak", "load", "--config"],
    "rules": ["soak-analyze", "--list-rules", "--rules"],
    "run": ["soak", "run", "--check", "--config"],
}


def _cli_cases() -> list[Any]:
    """(cli, file text, exit code): hostile text for all four, a valid config where the
    command only checks it (so exit 0 starts nothing)."""
    cases = []
    for name in sorted(CLIS):
        cases.append(pytest.param(name, "[" * 1000 + "]" * 1000, 2, id=f"{name}-nested"))
        secret_in_wrong_place = copy.deepcopy(SEEDS[name])
        first = next(iter(secret_in_wrong_place))
        secret_in_wrong_place[first] = f"https://soak:{PASSWORD}@127.0.0.1:99999/x"
        text = yaml.safe_dump(secret_in_wrong_place)
        cases.append(pytest.param(name, text, 2, id=f"{name}-url-with-password-as-{first}"))
    cases.append(pytest.param("exporter", yaml.safe_dump(EXPORTER), 0, id="exporter-valid"))
    cases.append(pytest.param("rules", yaml.safe_dump(RULES), 0, id="rules-valid"))
    return cases


@pytest.mark.parametrize(("cli", "text", "code"), _cli_cases())
def test_the_clis_exit_0_or_2_with_one_line_and_no_password(
    tmp_path: Path, cli: str, text: str, code: int
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    program, *args = CLIS[cli]
    done = subprocess.run(
        [str(Path(sys.executable).parent / program), *args, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    assert PASSWORD not in done.stderr + done.stdout
    if code == 2:
        assert done.stderr.count("\n") == 1 and str(path) in done.stderr, done.stderr
