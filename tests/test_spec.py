"""Model spec strings: one resolver for every entry point."""

from __future__ import annotations

import pytest
from langchain_openai import ChatOpenAI

from rapid_agent import ConfigError, GenerationSettings, ModelResolver, parse_spec
from rapid_agent.models.hf import HFTextChatModel, HFVisionChatModel
from rapid_agent.testing import echo_captioner


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("hf:Qwen/Qwen2.5-VL-7B-Instruct", ("hf", "Qwen/Qwen2.5-VL-7B-Instruct", None)),
        ("hf:/ckpt/step-100", ("hf", "/ckpt/step-100", None)),
        ("openai:Qwen/Qwen3-8B@http://10.0.0.5:8000/v1", ("openai", "Qwen/Qwen3-8B", "http://10.0.0.5:8000/v1")),
        ("openai:gpt-4o-mini", ("openai", "gpt-4o-mini", None)),
        ("anthropic:claude-sonnet-4-5", ("anthropic", "claude-sonnet-4-5", None)),
        (" tiny ", ("tiny", "tiny", None)),
    ],
)
def test_specs_parse(spec, parsed):
    assert parse_spec(spec) == parsed


@pytest.mark.parametrize("spec", ["gpt4", "hf:", ":model", "openai:m@ftp://x", "openai:@http://x/v1", ""])
def test_malformed_specs_are_config_errors(spec):
    with pytest.raises(ConfigError, match="malformed model spec"):
        parse_spec(spec)


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
        config, = configs_from_args(parser().parse_args(["--reasoner", "openai:r@http://h:1/v1", "--reasoner", "tiny",
                                                       *argv]))
        resolver = ModelResolver({"captioner": config.captioner_generation, "reasoner": config.reasoner_generation})
        served, tiny = (resolver.resolve(spec, "reasoner") for spec in config.reasoners)
        return resolver.resolve(config.captioner, "captioner").max_new_tokens, served.max_tokens, tiny.max_new_tokens

    assert budgets() == (64, 8192, 64)  # defaults per model: 'tiny' stays short beside a real reasoner
    assert budgets("--reason-max-new-tokens", "300") == (64, 300, 300)
    assert budgets("--max-new-tokens", "300") == (64, 300, 300)  # the alias never touches the captioner's budget
    assert budgets("--caption-max-new-tokens", "77") == (77, 8192, 64)
