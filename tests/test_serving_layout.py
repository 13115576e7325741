"""The serving wing's shape: the library never imports the entry files, importing builds nothing, the
environment is read once per process, and with no models set the shipped miniature-world ones are served."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from rapid_agent.serving.graphs import GRAPH_NAMES, ServedGraphs
from rapid_agent.serving.mcp.__main__ import build_stdio_server
from rapid_agent.serving.settings import DEFAULT_CAPTIONER, DEFAULT_REASONER, ServeSettings

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_library_module_imports_upward():
    """The library imports neither the entry files (`graphs/`) nor the applications (`training/`, `evals/`)."""
    upward = {
        str(path.relative_to(ROOT)): sorted(
            name for name in imported_modules(path) if name.split(".")[0] in {"graphs", "training", "evals"}
        )
        for path in (ROOT / "rapid_agent").rglob("*.py")
    }
    assert {path: names for path, names in upward.items() if names} == {}


def test_processes_for_served_models_start_without_torch():
    """The library, the eval CLI, the served graph and the MCP server import torch and transformers only when a
    local model is loaded: a process that talks to served models starts in about a second, not three."""
    code = ("import sys, rapid_agent, evals.run, graphs.rapid, rapid_agent.serving.mcp.__main__; "
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]", done.stderr[-2000:]


def test_entry_files_are_thin():
    """`graphs/` holds only what langgraph.json points at, each a few lines over `rapid_agent.serving`."""
    config = json.loads((ROOT / "graphs" / "langgraph.json").read_text())
    pointed = {spec["path"].split(":")[0] for spec in config["graphs"].values()}
    pointed |= {config["auth"]["path"], config["http"]["app"]}
    files = {path.name for path in (ROOT / "graphs").glob("*.py")} - {"__init__.py"}
    assert files == {"rapid.py", "auth.py", "mcp_app.py"}
    assert pointed == {"graphs.rapid", "./auth.py:auth", "./mcp_app.py:app"}
    for name in files:
        assert len((ROOT / "graphs" / name).read_text().splitlines()) <= 30, name


ENTRY_IMPORT = """
import sys
from rapid_agent.serving import settings

reads = []
original = settings.ServeSettings.from_env.__func__
settings.ServeSettings.from_env = classmethod(lambda cls, *a, **k: reads.append(1) or original(cls, *a, **k))
import graphs.auth, graphs.mcp_app, graphs.rapid
from rapid_agent.serving.process import process_graphs
print("built at import:", process_graphs.cache_info().currsize, "env reads:", len(reads), flush=True)
if sys.argv[1] == "build":
    rapid = graphs.rapid.rapid()
    assert graphs.rapid.rapid() is rapid and graphs.rapid.rapid_recaption() is not rapid
    graphs.rapid.look_and_reason(), graphs.rapid.describe_image()
    print("env reads after building:", len(reads), flush=True)
"""


def run_entry_import(mode: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", ENTRY_IMPORT, mode], cwd=ROOT / "graphs", env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True, text=True, timeout=600,
    )


@pytest.mark.slow
def test_importing_the_entry_files_builds_nothing_and_reads_the_environment_once():
    # a dead served reasoner: building (or checking) the graph at import would fail the import
    dead = {"RAPID_API_KEYS": "k", "RAPID_REASONER": "openai:r@http://127.0.0.1:9/v1", "HF_HUB_OFFLINE": "1"}
    imported = run_entry_import("import", dead)
    assert imported.returncode == 0, imported.stderr
    assert "built at import: 0 env reads: 1" in imported.stdout
    # with no models set, the graphs build on first use, on the shipped models, with a one-line notice
    built = run_entry_import("build", {"RAPID_API_KEYS": "k", "HF_HUB_OFFLINE": "1"})
    assert built.returncode == 0, built.stderr
    assert "env reads after building: 1" in built.stdout
    notices = [line for line in built.stderr.splitlines() if "miniature-world" in line]
    assert len(notices) == 1 and "RAPID_CAPTIONER and RAPID_REASONER" in notices[0]


@pytest.mark.parametrize(
    ("captioner", "reasoner", "named"),
    [
        (DEFAULT_CAPTIONER, DEFAULT_REASONER, ["RAPID_CAPTIONER and RAPID_REASONER"]),
        ("hf:Qwen/Qwen2.5-VL-3B-Instruct", DEFAULT_REASONER, ["reasoner miniworld:reasoner-large", "set RAPID_REASONER"]),
        ("hf:Qwen/Qwen2.5-VL-3B-Instruct", "openai:r@http://h:1/v1", None),
    ],
)
def test_the_default_models_notice_names_what_to_set(captioner, reasoner, named):
    notice = ServeSettings(captioner=captioner, reasoner=reasoner).default_models_notice()
    if named is None:
        assert notice is None
    else:
        assert all(part in notice for part in named), notice


def test_the_stdio_server_starts_on_the_shipped_models_and_says_so(capsys):
    build_stdio_server(ServeSettings())
    notice = capsys.readouterr().err
    assert "serving the shipped miniature-world models (captioner miniworld:captioner" in notice


def test_served_graphs_build_once_and_share_the_rapid_graph():
    graphs = ServedGraphs(ServeSettings())
    built = {name: graphs.graph(name) for name in GRAPH_NAMES}
    assert all(graphs.graph(name) is graph for name, graph in built.items())
    with pytest.raises(KeyError, match="unknown served graph 'other'"):
        graphs.graph("other")
