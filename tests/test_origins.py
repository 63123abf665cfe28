"""A page from another site cannot open a DDP connection with the user's cookies."""

import pytest
import websocket
from django.test import override_settings

from ddp.origins import origin_allowed
from ddp.testing import ServerProcess

HOST = "ddp.example.com:8000"


def environ(origin):
    env = {"HTTP_HOST": HOST}
    if origin is not None:
        env["HTTP_ORIGIN"] = origin
    return env


@pytest.mark.quick
@override_settings(ALLOWED_HOSTS=["ddp.example.com", ".trusted.example"])
@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (None, True),  # not a browser: no one's cookies
        ("http://ddp.example.com:8000", True),  # the same host
        ("https://www.trusted.example", True),  # ALLOWED_HOSTS
        ("https://evil.example", False),
        ("null", False),
        ("file://", False),
        ("http://ddp.example.com.evil.example", False),
    ],
)
def test_default_same_host_and_allowed_hosts(origin, allowed):
    assert origin_allowed(environ(origin)) is allowed


@pytest.mark.quick
@override_settings(ALLOWED_HOSTS=["ddp.example.com"])
def test_allowed_origins_setting():
    with override_settings(DDP={"ALLOWED_ORIGINS": ["https://app.example.com"]}):
        assert origin_allowed(environ("https://app.example.com"))
        assert not origin_allowed(environ("https://other.example.com"))
    with override_settings(DDP={"ALLOWED_ORIGINS": ["*"]}):
        assert origin_allowed(environ("https://other.example.com"))


@pytest.mark.django_db(transaction=True)
def test_live_server_refuses_foreign_pages():
    env = {"TEST_ALLOWED_HOSTS": "127.0.0.1,localhost"}
    ddp = {"ALLOWED_ORIGINS": ["https://app.example.com"]}
    with ServerProcess(env=env, ddp=ddp) as server:
        with pytest.raises(websocket.WebSocketBadStatusException) as info:
            websocket.create_connection(server.ws_url, origin="https://evil.example", timeout=10)
        assert info.value.status_code == 403
        for origin in (f"http://127.0.0.1:{server.port}", "https://app.example.com", None):
            options = {"suppress_origin": True} if origin is None else {"origin": origin}
            ws = websocket.create_connection(server.ws_url, timeout=10, **options)
            ws.send('{"msg":"connect","version":"1","support":["1"]}')
            assert '"connected"' in ws.recv()
            ws.close()
