"""rudp logs through the standard ``logging`` module, quietly, never to stdout."""

from __future__ import annotations

import asyncio
import logging
import logging.config
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest

import rudp
from rudp import _compiled, log

HOST = "127.0.0.1"


def python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "RUDP_LOG"}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=60,
        env=environ,
    )


#: A program that opens and closes one rudp connection.
ONE_CONNECTION = """
    import asyncio, rudp

    async def main():
        async def handle(reader, writer):
            writer.close()
        server = await rudp.start_server(handle, "127.0.0.1", 0)
        _, writer = await rudp.open_connection("127.0.0.1", server.addresses[0][1])
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
"""


@pytest.fixture
def rudp_logger() -> Iterator[logging.Logger]:
    """The "rudp" logger, restored afterwards."""
    logger = logging.getLogger("rudp")
    level, disabled = logger.level, logger.disabled
    root_level = logging.getLogger().level
    yield logger
    logger.setLevel(level)
    logger.disabled = disabled
    logging.getLogger().setLevel(root_level)
    logging.disable(logging.NOTSET)


async def _one_connection() -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await rudp.start_server(handle, HOST, 0)
    _, writer = await rudp.open_connection(HOST, server.addresses[0][1])
    writer.close()
    await writer.wait_closed()
    server.close()
    await server.wait_closed()


def test_import_pulls_in_no_cli_or_dev_packages() -> None:
    """No rich/pygments (0.1 s of import), no uvloop, no structlog: so rudp cannot
    touch an application's structlog configuration either."""
    res = python(
        """
        import sys, rudp
        print(sorted(m for m in ("rich", "pygments", "uvloop", "structlog") if m in sys.modules))
        """
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_structlog_renders_lazily_and_is_never_configured() -> None:
    """structlog is imported only once a record is formatted, renders the logfmt
    fields, and rudp leaves structlog's global configuration alone."""
    res = python(
        """
        import asyncio, io, logging, sys, rudp
        from rudp import _compiled, log
        records = []
        class Keep(logging.Handler):
            def emit(self, record):
                records.append(record)
        logging.getLogger("rudp").addHandler(Keep())
        log.set_level("debug")
        log.logger.debug("probe", conn="a b", n=3, ok=True, gone=None)
        print("structlog" in sys.modules)  # a record was handled, not formatted
        print(records[0].getMessage())
        import structlog
        print(structlog.is_configured())
        """
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["False", 'probe conn="a b" n=3 ok=true gone=', "False"]


def test_library_etiquette_quiet_by_default() -> None:
    logger = logging.getLogger("rudp")
    assert logger.level == logging.NOTSET  # the application decides
    assert [type(h) for h in logger.handlers] == [logging.NullHandler]
    assert logger.propagate
    res = python(ONE_CONNECTION + "\n    asyncio.run(main())\n")
    assert res.returncode == 0 and res.stdout == "" and res.stderr == "", res


async def test_events_are_stdlib_records_with_structured_fields(
    rudp_logger: logging.Logger, capsys: pytest.CaptureFixture[str]
) -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    rudp_logger.addHandler(handler)
    rudp_logger.setLevel(logging.DEBUG)
    try:
        await _one_connection()
    finally:
        rudp_logger.removeHandler(handler)
    states = [r for r in records if getattr(r, "rudp_event", None) == "state"]
    assert states, [r.getMessage() for r in records]
    r = next(r for r in states if r.rudp_fields["new"] == "ESTABLISHED")  # type: ignore[attr-defined]
    assert r.name == "rudp" and r.levelno == logging.DEBUG
    assert r.getMessage().startswith("state conn=")
    assert "old=SYN-" in r.getMessage() and "new=ESTABLISHED" in r.getMessage()
    assert set(r.rudp_fields) >= {"conn", "old", "new"}  # type: ignore[attr-defined]
    # The record points at the engine's call site, not at rudp/log.py. Compiled with
    # mypyc, the engine and the endpoint's I/O have no Python frames: the nearest one
    # is the first interpreted caller's (the event loop's, for a received segment).
    assert not r.pathname.endswith(os.path.join("rudp", "log.py")), r.pathname
    if not _compiled.COMPILED:
        assert r.pathname.endswith(os.path.join("engine", "connection.py")), r.pathname
    out = capsys.readouterr()
    assert out.out == ""


@pytest.mark.parametrize("mode", ["setLevel", "root", "disable", "dictConfig", "set_level"])
def test_fast_flags_follow_the_logger(rudp_logger: logging.Logger, mode: str) -> None:
    assert not log.debug_enabled and not log.info_enabled  # default: root at WARNING
    if mode == "setLevel":
        rudp_logger.setLevel(logging.DEBUG)
    elif mode == "set_level":
        log.set_level("debug")
    elif mode == "root":  # "rudp" has no level of its own: the root's applies
        logging.getLogger().setLevel(logging.DEBUG)
    elif mode == "dictConfig":
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "loggers": {"rudp": {"level": "INFO"}},
            }
        )
    else:
        rudp_logger.setLevel(logging.DEBUG)
        assert log.debug_enabled
        logging.disable(logging.INFO)
        assert not log.debug_enabled and not log.info_enabled
        return
    assert log.info_enabled
    assert log.debug_enabled is (mode != "dictConfig")
    rudp_logger.setLevel(logging.WARNING)
    assert not log.debug_enabled and not log.info_enabled


def test_set_level_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        log.set_level("loud")


def test_app_basic_config_gets_rudp_debug_on_stderr_not_stdout() -> None:
    """The issue's case: an app with basicConfig(stream=stderr) sees rudp's lines there."""
    res = python(
        ONE_CONNECTION
        + """
    import logging, sys
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="%(name)s %(message)s")
    logging.getLogger("rudp").setLevel(logging.DEBUG)
    asyncio.run(main())
    """
    )
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""
    state_lines = [line for line in res.stderr.splitlines() if line.startswith("rudp state ")]
    assert len(state_lines) >= 4, res.stderr


def test_rudp_log_environment_variable() -> None:
    res = python(ONE_CONNECTION + "\n    asyncio.run(main())\n", RUDP_LOG="debug")
    assert res.returncode == 0, res.stderr
    assert res.stdout == ""
    first = [line for line in res.stderr.splitlines() if " state " in line]
    assert first and first[0].startswith("rudp DEBUG state conn="), res.stderr
    # Once the application configures logging, its handlers print, and only once.
    res = python(
        ONE_CONNECTION
        + """
    import logging, sys
    logging.basicConfig(stream=sys.stderr, format="app %(name)s %(message)s")
    asyncio.run(main())
    """,
        RUDP_LOG="debug",
    )
    assert res.returncode == 0, res.stderr
    states = [line for line in res.stderr.splitlines() if " state " in line]
    assert states and all(line.startswith("app rudp state ") for line in states), res.stderr
    assert len(states) == len(first)


def test_rudp_log_bad_value_warns_and_imports() -> None:
    res = python("import rudp, logging; print(logging.getLogger('rudp').level)", RUDP_LOG="loud")
    assert res.returncode == 0
    assert res.stdout.strip() == "0"
    assert "RUDP_LOG ignored: unknown log level 'loud'" in res.stderr
