"""Request guards of the served graph: image hardening for remote callers, run-request checks, model allowlist."""

from __future__ import annotations

import http.server
import io
import socket
import threading

import pytest
from PIL import Image

from rapid_agent.errors import ImageInputError
from rapid_agent.images import ImagePolicy, check_images, load_images


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
