"""`python -m rapid_agent.serving.mcp`: the RAPID tools over stdio, for desktop and coding agents.

    python -m rapid_agent.serving.mcp --captioner hf:KaiChen1998/RACRO-7B-CRO-GRPO \\
        --reasoner openai:Qwen/Qwen3-8B@http://localhost:8000/v1 --allowed-root ~/Pictures

Serves `look_and_reason` and `describe_image` from an in-process RAPID graph, configured and checked as
the served graph is: each flag sets the `RAPID_*` variable of the same meaning
(`rapid_agent.serving.settings`; flags win over the environment, which is read once), and every call
passes the served request guard (image policy, text limits, model allowlist). Without model flags or
variables it serves the shipped miniature-world models and says so on stderr. Local images are read
only under `--allowed-root` (unset: no local paths). Logs go to stderr; stdout carries the protocol and
nothing else.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from functools import partial
from io import TextIOWrapper
from pathlib import Path

import anyio
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server

from rapid_agent.errors import ConfigError
from rapid_agent.serving.graphs import ServedGraphs
from rapid_agent.serving.guard import check_tool_call
from rapid_agent.serving.mcp.server import build_server, graph_runner
from rapid_agent.serving.settings import DEFAULT_CAPTIONER, DEFAULT_REASONER, ENV_NAMES, ServeSettings
from rapid_agent.serving.tools import TOOL_NAMES

_FLAGS = {  # flag -> settings field (its RAPID_* variable)
    "captioner": "captioner",
    "reasoner": "reasoner",
    "allowed_root": "image_root",
    "allowed_specs": "allowed_specs",
    "allow_image_urls": "allow_image_urls",
    "prompt_preset": "prompt_preset",
    "max_recaption_rounds": "max_recaption_rounds",
    "caption_max_new_tokens": "caption_max_new_tokens",
    "reason_max_new_tokens": "reason_max_new_tokens",
    "call_timeout_s": "call_timeout_s",
    "caption_cache": "caption_cache",
}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    env = ENV_NAMES
    parser = argparse.ArgumentParser(
        prog="python -m rapid_agent.serving.mcp", description="Serve the RAPID tools (look_and_reason, describe_image) over stdio."
    )
    parser.add_argument("--captioner", help=f"captioner model spec ({env['captioner']}; default: {DEFAULT_CAPTIONER})")
    parser.add_argument("--reasoner", help=f"reasoner model spec ({env['reasoner']}; default: {DEFAULT_REASONER})")
    parser.add_argument(
        "--allowed-root", type=_folder, help=f"folder whose image files the tools may read ({env['image_root']}; unset: none)"
    )
    parser.add_argument(
        "--allowed-specs", help=f"comma-separated extra reasoner specs a call may pick ({env['allowed_specs']})"
    )
    parser.add_argument(
        "--allow-image-urls", action="store_const", const="1", help=f"fetch public http(s) image URLs ({env['allow_image_urls']})"
    )
    parser.add_argument("--prompt-preset", help=f"prompt preset ({env['prompt_preset']})")
    parser.add_argument("--max-recaption-rounds", help=f"re-caption rounds ({env['max_recaption_rounds']}; default 0)")
    parser.add_argument(
        "--caption-max-new-tokens", help=f"captioner budget per call ({env['caption_max_new_tokens']}; default: the role's)"
    )
    parser.add_argument(
        "--reason-max-new-tokens", help=f"reasoner budget per call ({env['reason_max_new_tokens']}; default: the role's)"
    )
    parser.add_argument("--call-timeout-s", help=f"bound on each model call, seconds ({env['call_timeout_s']})")
    parser.add_argument(
        "--caption-cache", help=f"SQLite file (or :memory:) caching the captioner's outputs ({env['caption_cache']}; unset: off)"
    )
    return parser.parse_args(argv)


def _folder(path: str) -> str:
    return str(Path(path).expanduser().resolve())


def settings_env(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The `RAPID_*` environment the server runs with: `environ`, overridden by the flags given."""
    given = {ENV_NAMES[field]: str(getattr(args, flag)) for flag, field in _FLAGS.items() if getattr(args, flag)}
    return {**environ, **given}


def build_stdio_server(settings: ServeSettings) -> Server:
    """The MCP server over in-process tool graphs of `settings` (served models checked first)."""
    graphs = ServedGraphs(settings)
    graphs.check_models()
    tool_graphs = {name: graphs.graph(name) for name in TOOL_NAMES}
    return build_server(graph_runner(tool_graphs), check=partial(check_tool_call, settings=settings))


def protocol_stdout() -> anyio.AsyncFile[str]:
    """This process's stdout, kept for the protocol alone: anything else written to it (a library's
    print, a native warning) goes to stderr from now on."""
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    return anyio.wrap_file(TextIOWrapper(protocol, encoding="utf-8"))


async def serve_stdio(server: Server, stdout: anyio.AsyncFile[str] | None = None) -> None:
    async with stdio_server(stdout=stdout) as (read, write):
        await server.run(read, write, server.create_initialization_options())


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    stdout = protocol_stdout()
    try:
        server = build_stdio_server(ServeSettings.from_env(settings_env(args)))
    except ConfigError as exc:
        sys.exit(f"python -m rapid_agent.serving.mcp: {exc}")
    anyio.run(serve_stdio, server, stdout)


if __name__ == "__main__":
    main()
