"""Request guards of the served graph: image hardening for remote callers, run-request checks, model allowlist."""

from __future__ import annotations

import base64
import http.server
import io
import socket
import threading

import pytest
from PIL import Image

from rapid_agent.errors import ConfigError, ImageInputError, InputError
from rapid_agent.images import ImagePolicy, check_images, load_images
from rapid_agent.models.spec import ModelResolver
from rapid_agent.serving.graphs import graph_from_settings
from rapid_agent.serving.guard import AllowlistResolver, check_run_request
from rapid_agent.serving.settings import ServeSettings
from rapid_agent.testing import echo_captioner, fact_reasoner
from rapid_agent.testing.openai_server import ScriptedOpenAIServer


def image_bytes(fmt: str, size: tuple[int, int] = (32, 32)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "blue").save(buffer, format=fmt)
    return buffer.getvalue()


def test_formats_outside_the_policy_are_refused():
    assert load_images([image_bytes("PNG")], ImagePolicy())[0].mode == "RGB"
    with pytest.raises(ImageInputError, match=r"image 0: not a readable image in an accepted format \(PNG, JPEG"):
        load_images([image_bytes("PPM")], ImagePolicy())
    with pytest.raises(ImageInputError, match=r"accepted format \(JPEG\)"):
        load_images([image_bytes("PNG")], ImagePolicy(formats=("JPEG",)))


def test_check_images_validates_without_fetching_urls(monkeypatch):
    def public_address(host, *args, **kwargs):
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 0))]

    def no_fetch(*args, **kwargs):
        raise AssertionError("check_images must not fetch")

    monkeypatch.setattr(socket, "getaddrinfo", public_address)
    monkeypatch.setattr("urllib.request.OpenerDirector.open", no_fetch)
    policy = ImagePolicy(allow_urls=True, max_images=2)
    check_images(["https://images.example/cat.png", image_bytes("PNG")], policy)
    with pytest.raises(ImageInputError, match="limit is max_images=2"):
        check_images([image_bytes("PNG")] * 3, policy)
    with pytest.raises(ImageInputError, match="image 1: not a readable image"):
        check_images(["https://images.example/cat.png", b"not an image"], policy)
    with pytest.raises(ImageInputError, match="image URLs are disabled"):
        check_images(["https://images.example/cat.png"], ImagePolicy())


@pytest.fixture
def redirecting_server():
    """A loopback HTTP server whose /go answers 302 -> /secret on itself (a private address)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            if self.path == "/go":
                self.send_response(302)
                self.send_header("Location", f"http://127.0.0.1:{self.server.server_port}/secret")
                self.end_headers()
            else:
                self.send_response(200)
                self.end_headers()
                self.wfile.write(image_bytes("PNG"))

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    thread.join()


def test_redirects_to_private_addresses_are_refused(redirecting_server, monkeypatch):
    """A public URL that redirects to a private address must not be followed (SSRF by redirect)."""
    real_getaddrinfo = socket.getaddrinfo
    checked: list[str] = []

    def pretend_public_once(host, *args, **kwargs):
        # The first check (of the requested URL) sees a public address; everything else is real.
        checked.append(host)
        if len(checked) == 1:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 0))]
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", pretend_public_once)
    url = f"http://127.0.0.1:{redirecting_server.server_port}/go"
    with pytest.raises(ImageInputError, match=r"redirect to 'http://127\.0\.0\.1:\d+/secret'.*non-public address"):
        load_images([url], ImagePolicy(allow_urls=True))


# --- serving settings, run-request checks and the model allowlist (graphs/) ---


def test_settings_come_from_the_environment_and_bad_values_name_the_variable(tmp_path):
    settings = ServeSettings.from_env({
        "RAPID_REASONER": "openai:r@http://h:1/v1", "RAPID_ALLOWED_SPECS": " tiny , hf:a/b ,",
        "RAPID_IMAGE_ROOT": str(tmp_path), "RAPID_MAX_IMAGES": "2", "RAPID_API_KEYS": "k1,k2",
    })
    assert settings.allowed_model_specs == {"miniworld:captioner", "tiny", "openai:r@http://h:1/v1", "hf:a/b"}
    policy = settings.image_policy()
    assert (policy.allowed_root, policy.allow_local_paths, policy.allow_urls, policy.max_images) == (tmp_path, True, False, 2)
    assert "k1" not in repr(settings) and [k.get_secret_value() for k in settings.api_keys] == ["k1", "k2"]
    assert ServeSettings.from_env({}).image_policy().allow_local_paths is False  # no root: no local paths at all
    budgets = ServeSettings.from_env({"RAPID_CAPTION_MAX_NEW_TOKENS": "256"})
    assert budgets.generation("captioner").budget("captioner") == 256
    assert budgets.generation("reasoner").budget("reasoner") == 8192  # unset: the role's default
    for env, message in [
        ({"RAPID_MAX_IMAGES": "many"}, "RAPID_MAX_IMAGES: Input should be a valid integer"),
        ({"RAPID_MAX_TEXT_CHARS": "999999"}, "RAPID_MAX_TEXT_CHARS: Input should be less than or equal to 20000"),
        ({"RAPID_IMAGE_ROOT": str(tmp_path / "missing")}, "RAPID_IMAGE_ROOT: Value error, .* is not a folder"),
        ({"RAPID_ALLOW_IMAGE_URLS": "yes"}, "RAPID_ALLOW_IMAGE_URLS must be 0 or 1"),
        ({"RAPID_REASON_MAX_NEW_TOKENS": "0"}, "RAPID_REASON_MAX_NEW_TOKENS: Input should be greater than 0"),
        ({"RAPID_MAX_NEW_TOKENS": "512"}, "replaced by RAPID_CAPTION_MAX_NEW_TOKENS and RAPID_REASON_MAX_NEW_TOKENS"),
        ({"RAPID_REASONER_SAMPLES": "0"}, "RAPID_REASONER_SAMPLES: Input should be greater than or equal to 1"),
        ({"RAPID_REASONER_SAMPLES": "9"}, "RAPID_REASONER_SAMPLES=9 is above RAPID_MAX_REASONER_SAMPLES=5"),
    ]:
        with pytest.raises(ConfigError, match=message):
            ServeSettings.from_env(env)


SETTINGS = ServeSettings(captioner="tiny", reasoner="openai:r@http://h:1/v1", allowed_specs=("hf:ok/model",), rounds_limit=2)
GOOD = {"images": ["data:image/png;base64," + base64.b64encode(image_bytes("PNG")).decode()],
        "question": "How many?"}


@pytest.mark.parametrize(
    ("input_", "context", "error", "message"),
    [
        (None, None, InputError, "input must be an object .* got null"),
        ([1], None, InputError, "got list"),
        ({"images": []}, None, InputError, "input.question is required"),
        (GOOD | {"options": ["A", ""]}, None, InputError, "input.options must be a list of non-empty strings"),
        (GOOD | {"options": [str(i) for i in range(27)]}, None, InputError, "27 options; the limit is 26"),
        (GOOD | {"captions": ["x" * 8001]}, None, InputError, r"input.captions\[0\] has 8001 characters; the limit is 8000"),
        (GOOD | {"tentative_answer": 3}, None, InputError, "input.tentative_answer must be a string"),
        (GOOD | {"images": [b"raw"]}, None, InputError, "input.images must be a list of strings"),
        (GOOD, "tiny", ConfigError, "context must be an object"),
        (GOOD, {"reasoner": "tiny "}, None, None),  # allowed (spaces trimmed, as the resolver does)
        (GOOD, {"captioner": "hf:ok/model", "max_recaption_rounds": 2, "prompt_preset": "paper-eval"}, None, None),
        (GOOD, {"reasoner": "hf:evil/model"}, ConfigError, "context.reasoner: model spec 'hf:evil/model' is not allowed"),
        (GOOD, {"max_recaption_rounds": 3}, ConfigError, "from 0 to 2 .* got 3"),
        (GOOD, {"max_recaption_rounds": True}, ConfigError, "must be an integer"),
        (GOOD, {"max_recaption_rounds": -1}, ConfigError, "got -1"),
        (GOOD, {"prompt_preset": {"name": "x"}}, ConfigError, "context.prompt_preset must be one of"),
        (GOOD, {"prompt_preset": ["blind"]}, ConfigError, "context.prompt_preset must be one of"),
        (GOOD, {"reasoner_samples": 5}, None, None),
        (GOOD, {"reasoner_samples": 6}, ConfigError, r"from 1 to 5 \(RAPID_MAX_REASONER_SAMPLES\), got 6"),
        (GOOD, {"reasoner_samples": 0}, ConfigError, "got 0"),
        (GOOD, {"reasoner_samples": True}, ConfigError, "context.reasoner_samples must be an integer"),
        (GOOD, {"captioner": ["tiny", "hf:ok/model"]}, None, None),  # a captioner list of allowed specs
        (GOOD, {"captioner": ["tiny", "hf:evil/model"]}, ConfigError, r"context.captioner\[1\]: model spec 'hf:evil/model'"),
        (GOOD, {"captioner": ["tiny", "tiny "]}, ConfigError, "a captioner list needs distinct specs"),
        (GOOD, {"captioner": []}, ConfigError, "a captioner list needs distinct specs, at least one"),
        (GOOD, {"captioner": [3]}, ConfigError, r"context.captioner\[0\] must be a model spec string"),
        (GOOD | {"question": "<image 1> <image2>"}, None, InputError, "input.question has no text besides <image N>"),
    ],
)
def test_run_requests_are_checked_before_queueing(input_, context, error, message):
    if error is None:
        check_run_request(input_, context, SETTINGS)
    else:
        with pytest.raises(error, match=message):
            check_run_request(input_, context, SETTINGS)


def test_the_served_graph_enforces_the_allowlist_itself(tmp_path):
    """Whatever path a context takes to the graph, a spec outside the allowlist never builds a model."""
    with ScriptedOpenAIServer(echo_captioner("three red circles"), model_name="c") as captioner, \
            ScriptedOpenAIServer(fact_reasoner({"three red circles": "3"}), model_name="r") as reasoner:
        env = {"RAPID_CAPTIONER": captioner.spec, "RAPID_REASONER": reasoner.spec, "RAPID_IMAGE_ROOT": str(tmp_path)}
        Image.new("RGB", (40, 40)).save(tmp_path / "a.png")
        graph = graph_from_settings(ServeSettings.from_env(env))
        assert graph.invoke({"images": ["a.png"], "question": "How many?"})["answer"] == "3"
        requests = captioner.requests + reasoner.requests
        with pytest.raises(ConfigError, match="reasoner: model spec 'openai:gpt-4o' is not allowed on this server"):
            graph.invoke({"images": ["a.png"], "question": "How many?"}, context={"reasoner": "openai:gpt-4o"})
        with pytest.raises(ImageInputError, match="outside the allowed image root"):
            graph.invoke({"images": ["/etc/hostname"], "question": "How many?"})
        # the served graph checks its own text limit (RAPID_MAX_TEXT_CHARS), whatever path the text took
        with pytest.raises(InputError, match=r"captions\[0\] has 8001 characters; the limit is 8000"):
            graph.invoke({"question": "How many?", "captions": ["x" * 8001]})
        assert captioner.requests + reasoner.requests == requests  # refused before any model call
    resolver = AllowlistResolver(ServeSettings(captioner="tiny", reasoner="tiny"))
    with pytest.raises(ConfigError, match="captioner: model spec 'hf:x/y' is not allowed"):
        resolver.resolve("hf:x/y", "captioner")


def test_the_served_graph_votes_with_the_configured_samples():
    class Named(ModelResolver):
        def resolve(self, model, role):
            return {"c": echo_captioner("three red circles"), "r": reasoner}[model]

    reasoner = fact_reasoner({"three red circles": "3"})
    graph = graph_from_settings(ServeSettings(captioner="c", reasoner="r", reasoner_samples=3), resolver=Named())
    out = graph.invoke({"question": "How many?", "captions": ["three red circles"]})
    assert out["vote"]["counts"] == [{"answer": "3", "votes": 3}] and len(reasoner.calls) == 3
    out = graph.invoke({"question": "How many?", "captions": ["three red circles"]}, context={"reasoner_samples": 1})
    assert out["vote"] is None and len(reasoner.calls) == 4
