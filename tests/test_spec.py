"""Model spec strings: one resolver for every entry point."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from langchain_openai import ChatOpenAI
from trl import ModelConfig

from rapid_agent import ConfigError, GenerationSettings, ModelResolver, ModelSpec
from rapid_agent.miniworld import model_path
from rapid_agent.models.hf import HFTextChatModel, HFVisionChatModel
from rapid_agent.models.identity import model_identity
from rapid_agent.testing import echo_captioner
from training.config import policy_path, policy_spec

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("hf:Qwen/Qwen2.5-VL-7B-Instruct", ModelSpec(provider="hf", model="Qwen/Qwen2.5-VL-7B-Instruct")),
        ("hf:/ckpt/step-100", ModelSpec(provider="hf", model="/ckpt/step-100")),
        ("hf:/ckpt/model.gguf", ModelSpec(provider="hf", model="/ckpt/model.gguf")),
        ("openai:Qwen/Qwen3-8B@http://10.0.0.5:8000/v1",
         ModelSpec(provider="openai", model="Qwen/Qwen3-8B", base_url="http://10.0.0.5:8000/v1")),
        ("openai:a@b@https://h/v1", ModelSpec(provider="openai", model="a@b", base_url="https://h/v1")),
        ("openai:gpt-4o-mini", ModelSpec(provider="openai", model="gpt-4o-mini")),
        ("anthropic:claude-sonnet-4-5", ModelSpec(provider="anthropic", model="claude-sonnet-4-5")),
        ("anthropic:x@y", ModelSpec(provider="anthropic", model="x@y")),  # only openai: takes an @URL
        (" tiny ", ModelSpec(provider="tiny", model="tiny")),
        ("miniworld:reasoner-small", ModelSpec(provider="miniworld", model="reasoner-small")),
    ],
)
def test_specs_parse_and_print_back_canonically(spec, parsed):
    assert ModelSpec.parse(spec) == parsed
    assert str(parsed) == spec.strip()
    assert ModelSpec.parse(str(parsed)) == parsed


@pytest.mark.parametrize("spec", ["gpt4", "hf:", ":model", "openai:m@ftp://x", "openai:@http://x/v1", "", " hf: "])
def test_malformed_specs_are_config_errors_naming_the_spec(spec):
    with pytest.raises(ConfigError, match=re.escape(f"malformed model spec {spec.strip()!r}")):
        ModelSpec.parse(spec)


@pytest.fixture
def tiny_home(tiny_models, monkeypatch) -> tuple[Path, Path]:
    """The session's tiny models as the `tiny` spec's (already built: nothing is generated)."""
    monkeypatch.setenv("RAPID_TINY_MODELS_DIR", str(tiny_models[0].parent))
    return tiny_models


@pytest.mark.parametrize(
    ("spec", "role", "expected"),
    [
        ("hf:{folder}", "captioner", "{folder}"),
        ("hf:{folder}/missing", "captioner", None),
        ("hf:Qwen/Qwen2.5-VL-7B-Instruct", "captioner", None),
        ("tiny", "captioner", "{tiny_captioner}"),
        ("tiny", "reasoner", "{tiny_reasoner}"),
        ("miniworld:reasoner-small", "reasoner", "{miniworld}/reasoner-small"),
        ("miniworld:captioner", "captioner", "{miniworld}/captioner"),
        ("openai:m@http://127.0.0.1:1/v1", "reasoner", None),
        ("openai:gpt-4o-mini", "reasoner", None),
        ("anthropic:claude-sonnet-4-5", "reasoner", None),
    ],
)
def test_local_path_per_provider(spec, role, expected, tiny_home, tmp_path):
    places = {"folder": tmp_path, "tiny_captioner": tiny_home[0], "tiny_reasoner": tiny_home[1],
              "miniworld": model_path("captioner").parent}
    path = ModelSpec.parse(spec.format(**places)).local_path(role)
    assert path == (None if expected is None else Path(expected.format(**places)))


def test_unknown_miniworld_model_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown miniworld model 'nope'"):
        ModelSpec.parse("miniworld:nope").local_path("reasoner")


def test_local_providers_build_hf_backends_on_their_folders(tiny_home):
    resolver = ModelResolver()
    shipped = resolver.resolve("miniworld:reasoner-small", "reasoner")
    assert isinstance(shipped, HFTextChatModel) and shipped.model_path == str(model_path("reasoner-small"))
    tiny = resolver.resolve("tiny", "captioner")
    assert isinstance(tiny, HFVisionChatModel) and tiny.model_path == str(tiny_home[0])
    assert resolver.resolve(" tiny ", "captioner") is tiny  # one parsed spec, one cache entry


def test_identity_of_a_local_folder_is_its_files(tmp_path):
    folder = tmp_path / "ckpt"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "qwen2"}')
    (folder / "model.safetensors").write_bytes(b"\0" * (3 << 20))
    assert model_identity(f"hf:{folder}") == "hf:67e1e11afeabe7ee"  # caches written before keep matching
    assert model_identity(ModelSpec(provider="hf", model=str(folder))) == "hf:67e1e11afeabe7ee"
    (folder / "model.safetensors").write_bytes(b"\1" + b"\0" * ((3 << 20) - 1))  # retrained in place
    assert model_identity(f"hf:{folder}") == "hf:8254dca17a61b451"


@pytest.mark.parametrize(
    ("spec", "identity"),
    [
        # the name at its server: two servers may serve other weights under one name
        ("openai:my-model@http://127.0.0.1:8001/v1", "openai:my-model@http://127.0.0.1:8001/v1"),
        ("openai:my-model@http://127.0.0.1:8001/v1/", "openai:my-model@http://127.0.0.1:8001/v1"),
        ("openai:gpt-4o-mini", "openai:gpt-4o-mini"),
        ("hf:no-such-org/no-such-model", "hf:no-such-org/no-such-model@unknown"),  # a Hub id nowhere in the cache
        ("anthropic:claude-sonnet-4-5", "anthropic:claude-sonnet-4-5"),
    ],
)
def test_identity_of_remote_models_is_their_name(spec, identity):
    assert model_identity(spec) == identity


def test_identity_of_tiny_and_shipped_models_is_their_files(tiny_home):
    assert model_identity("tiny") == "tiny:" + model_identity(f"hf:{tiny_home[0]}").removeprefix("hf:")
    shipped = model_identity("miniworld:reasoner-small")
    assert shipped == model_identity(f"hf:{model_path('reasoner-small')}") and shipped.startswith("hf:")
    assert shipped != model_identity("miniworld:reasoner-large")


@pytest.mark.parametrize(
    ("captioner", "spec", "path"),
    [
        ("Qwen/Qwen2.5-VL-3B-Instruct", "hf:Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2.5-VL-3B-Instruct"),
        ("hf:Qwen/Qwen2.5-VL-3B-Instruct", "hf:Qwen/Qwen2.5-VL-3B-Instruct", "Qwen/Qwen2.5-VL-3B-Instruct"),
        ("{folder}", "hf:{folder}", "{folder}"),
        ("hf:{folder}", "hf:{folder}", "{folder}"),
        ("tiny", "tiny", "{tiny_captioner}"),
        ("miniworld:captioner-sft", "miniworld:captioner-sft", "{miniworld}/captioner-sft"),
    ],
)
def test_training_policy_spec_and_path(captioner, spec, path, tiny_home, tmp_path):
    places = {"folder": tmp_path, "tiny_captioner": tiny_home[0], "miniworld": model_path("captioner").parent}
    model_args = ModelConfig(model_name_or_path=captioner.format(**places))
    assert (str(policy_spec(model_args.model_name_or_path)), policy_path(model_args)) == (spec.format(**places), path.format(**places))


def _imports(tree: ast.AST) -> set[str]:
    """Every module a source imports (`from a import b` names `a` and `a.b`)."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_no_production_module_imports_the_test_package():
    sources = [p for top in ("rapid_agent", "evals", "training", "graphs") for p in (REPO / top).rglob("*.py")
               if not p.is_relative_to(REPO / "rapid_agent" / "testing")]
    assert len(sources) > 20
    offenders = [
        str(p.relative_to(REPO)) for p in sources
        if any(name == "rapid_agent.testing" or name.startswith("rapid_agent.testing.")
               for name in _imports(ast.parse(p.read_text(), str(p))))
    ]
    assert offenders == []


def test_resolver_builds_role_specific_local_backends_once(tiny_models):
    generation = {"reasoner": GenerationSettings(max_new_tokens=7, temperature=0.6, top_p=0.95)}
    resolver = ModelResolver(generation)
    captioner = resolver.resolve(f"hf:{tiny_models[0]}", "captioner")
    reasoner = resolver.resolve(f"hf:{tiny_models[1]}", "reasoner")
    assert isinstance(captioner, HFVisionChatModel) and isinstance(reasoner, HFTextChatModel)
    assert (reasoner.max_new_tokens, reasoner.temperature, reasoner.top_p) == (7, 0.6, 0.95)
    assert resolver.resolve(f"hf:{tiny_models[1]}", "reasoner") is reasoner  # cached: weights load once


def test_openai_spec_targets_the_given_endpoint():
    model = ModelResolver().resolve("openai:Qwen/Qwen3-8B@http://127.0.0.1:8001/v1", "reasoner")
    assert isinstance(model, ChatOpenAI)
    assert model.model_name == "Qwen/Qwen3-8B"
    assert model.openai_api_base == "http://127.0.0.1:8001/v1"
    assert model.max_retries == 0  # the graph's RetryPolicy owns retries


def test_chat_models_pass_through_and_bad_types_are_refused():
    model = echo_captioner()
    assert ModelResolver().resolve(model, "captioner") is model
    with pytest.raises(ConfigError, match="expected a chat model or a spec string, got int"):
        ModelResolver().resolve(3, "reasoner")
    with pytest.raises(ConfigError, match="cannot build model from spec 'nosuchprovider:x'"):
        ModelResolver().resolve("nosuchprovider:x", "reasoner")


def test_missing_local_checkpoint_is_a_config_error(tmp_path):
    model = ModelResolver().resolve(f"hf:{tmp_path / 'missing'}", "reasoner")
    with pytest.raises(ConfigError, match="cannot load model"):
        model.load()


def test_each_role_has_its_own_default_budget_and_tiny_a_short_one(monkeypatch):
    from langchain_openai import ChatOpenAI

    from rapid_agent.models.served import ServedChatModel
    from rapid_agent.models.spec import DEFAULT_MAX_NEW_TOKENS, TINY_MAX_NEW_TOKENS

    settings = GenerationSettings()
    assert [settings.budget(r) for r in ("captioner", "reasoner")] == [1024, 8192] == list(DEFAULT_MAX_NEW_TOKENS.values())
    assert settings.budget("captioner", tiny=True) == TINY_MAX_NEW_TOKENS == 64
    assert GenerationSettings(max_new_tokens=9).budget("reasoner", tiny=True) == 9  # a set budget always wins

    resolver = ModelResolver()
    assert resolver.resolve("tiny", "captioner").max_new_tokens == 64
    served = resolver.resolve("openai:m@http://127.0.0.1:1/v1", "reasoner")
    assert isinstance(served, ServedChatModel) and served.max_tokens == 8192 and served.role == "reasoner"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    hosted = resolver.resolve("openai:gpt-4o-mini", "captioner")
    assert type(hosted) is ChatOpenAI and hosted.max_tokens == 1024  # OpenAI itself: no /models pre-check


def test_evals_cli_budgets_are_per_role_and_per_model():
    from evals.run import configs_from_args, parser

    def budgets(*argv):
        """The budget each model of the run gets: (captioner, first reasoner, second reasoner)."""
        config, = configs_from_args(parser().parse_args(["--captioner", "tiny", "--benchmark", "bundled",
                                                       "--reasoner", "openai:r@http://h:1/v1", "--reasoner", "tiny",
                                                       *argv]))
        resolver = ModelResolver({"captioner": config.captioner_generation, "reasoner": config.reasoner_generation})
        served, tiny = (resolver.resolve(spec, "reasoner") for spec in config.reasoners)
        return resolver.resolve(config.captioner, "captioner").max_new_tokens, served.max_tokens, tiny.max_new_tokens

    assert budgets() == (64, 8192, 64)  # defaults per model: 'tiny' stays short beside a real reasoner
    assert budgets("--reason-max-new-tokens", "300") == (64, 300, 300)
    assert budgets("--max-new-tokens", "300") == (64, 300, 300)  # the alias never touches the captioner's budget
    assert budgets("--caption-max-new-tokens", "77") == (77, 8192, 64)
