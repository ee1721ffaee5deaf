"""The metrics endpoint that cannot listen: a taken port is a startup error (exit 7, a restart can
get past it, so a fleet worker restarts its child), a host or port that cannot work is a
configuration error (exit 2), each naming host:port; never a traceback."""

from __future__ import annotations

import socket

import pytest

from poller.config import MetricsConfig
from poller.errors import ConfigError, StartupError
from poller.ops.http import serve_endpoints


def _serve(host: str, port: int) -> None:
    server = serve_endpoints(MetricsConfig(host=host, port=port), lambda: b"", lambda: (True, {}))
    server.shutdown()
    server.server_close()


def test_a_taken_port_is_a_startup_error_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StartupError) as info:
            _serve("127.0.0.1", port)
    assert info.value.exit_code == 7
    assert str(info.value).startswith(f"metrics: cannot listen on 127.0.0.1:{port}: ")
    assert "taken by another process" in str(info.value)


@pytest.mark.parametrize("host", ["999.1.1.1", "192.0.2.1"])  # unresolvable; not this host's
def test_a_host_it_cannot_listen_on_is_a_config_error_naming_it(host: str) -> None:
    with pytest.raises(ConfigError) as info:
        _serve(host, 0)
    (problem,) = info.value.problems
    assert problem.startswith(f"metrics: cannot listen on {host}:0: ")
    assert problem.endswith("; set metrics.host and metrics.port")


def test_a_free_port_serves() -> None:
    _serve("127.0.0.1", 0)
