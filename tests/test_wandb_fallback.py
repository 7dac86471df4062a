"""W&B degrades, never kills: a W&B server that cannot be used (down, unreachable, hanging, or
refusing the key) sends the run offline with one warning saying how to sync it later, and a W&B
failure at the end of a run is a warning, not a lost metrics.json. No test reaches the internet:
the servers are local ports."""

import json
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import wandb
from helpers import TINY, run_script
from lightning.pytorch.loggers import WandbLogger

from xlstm_exp.wandb_setup import finish_wandb, publish_summary, start_wandb, wandb_run

KEY = "0123456789abcdef0123456789abcdef01234567"  # shaped like a W&B key, valid nowhere


def closed_port() -> int:
    """A port nothing listens on (taken from the system, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RefusesTheKey(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self.send_response(401)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"errors": [{"message": "user is not logged in"}]}')

    do_POST = do_GET

    def log_message(self, *args) -> None:
        pass


@contextmanager
def server(kind: str) -> Iterator[str]:
    """The base URL of a W&B server that is down, hangs (accepts, never answers) or refuses
    every key."""
    if kind == "down":
        yield f"http://127.0.0.1:{closed_port()}"
    elif kind == "hangs":
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    else:
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), RefusesTheKey)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        try:
            yield f"http://127.0.0.1:{httpd.server_address[1]}"
        finally:
            httpd.shutdown()
            httpd.server_close()


def is_machine_wandb_setting(key: str) -> bool:
    return key.startswith("WANDB_") or key == "NETRC"


def wandb_settings(base_url: str, home: str) -> dict:
    """A key and `base_url`, and a home without a netrc or W&B settings file."""
    return {"HOME": home, "WANDB_API_KEY": KEY, "WANDB_BASE_URL": base_url}


@pytest.mark.parametrize("kind", ["down", "hangs", "refuses the key"])
def test_a_server_that_cannot_be_used_sends_the_run_offline(kind, tmp_path, monkeypatch, caplog):
    """Before, wandb.init waited 90 s (plus its retries) and then raised, ending the run."""
    with server(kind) as base_url:
        for key in filter(is_machine_wandb_setting, list(os.environ)):
            monkeypatch.delenv(key)
        for key, value in wandb_settings(base_url, str(tmp_path)).items():
            monkeypatch.setenv(key, value)
        wandb.teardown()  # W&B reads the environment once per process
        settings = {"init_timeout": 1}
        logger = WandbLogger(project="xlstm-exp", save_dir=str(tmp_path / "run"), settings=settings)
        started = time.monotonic()
        try:
            start_wandb(logger)
            assert logger.experiment.offline
            # W&B's own default was 90 s, and its login retried for 10 s more before that.
            assert time.monotonic() - started < 15
        finally:
            wandb.finish()
            wandb.teardown()
    (folder,) = (tmp_path / "run" / "wandb").glob("offline-run-*")
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "xlstm_exp"]
    assert warning.startswith(f"W&B server {base_url}: ")
    assert warning.endswith(f"upload it later with `wandb sync {folder}`")


class BrokenRun:
    """A W&B run whose every call fails, as when the connection drops during training."""

    offline = False

    @property
    def summary(self):
        raise wandb.errors.CommError("connection reset")

    @property
    def url(self):
        raise wandb.errors.CommError("connection reset")

    def finish(self) -> None:
        raise wandb.errors.CommError("upload cut short")


def test_a_wandb_failure_at_the_end_of_a_run_is_a_warning(tmp_path, caplog):
    """Before, publish_summary raised, and metrics.json (written after it) was never written."""
    logger = WandbLogger(project="xlstm-exp", save_dir=str(tmp_path))
    logger._experiment = BrokenRun()
    publish_summary([logger], {"val/loss": 1.0}, is_global_zero=True)
    assert wandb_run([logger]) is None
    finish_wandb([logger])
    warnings = [r.getMessage() for r in caplog.records if r.name == "xlstm_exp"]
    assert len(warnings) == 2
    assert "connection reset" in warnings[0] and "upload cut short" in warnings[1]


@pytest.mark.slow
def test_train_py_with_a_key_and_no_server_trains_offline(tmp_path):
    """`python train.py` on a compute node with a key but no network: before, 108 s and a
    failure in wandb.init before the first step."""
    home = tmp_path / "home"
    home.mkdir()
    base_url = f"http://127.0.0.1:{closed_port()}"
    env = {k: v for k, v in os.environ.items() if not is_machine_wandb_setting(k)}
    env |= {**wandb_settings(base_url, str(home)), "HYDRA_FULL_ERROR": "0"}
    tiny = ["model=lstm", "block=post", *(o for o in TINY if o != "logger=none")]
    run_dir = tmp_path / "run"
    timeout = "logger.wandb.settings.init_timeout=5"
    result = run_script(
        "train.py", "logger=wandb", timeout, *tiny, f"hydra.run.dir={run_dir}", env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_step"] == 4
    (folder,) = run_dir.glob("wandb/offline-run-*")
    assert list(folder.glob("run-*.wandb")) and metrics["wandb_run"].startswith(str(folder))
    output = result.stdout + result.stderr
    assert output.count(f"W&B server {base_url}: ") == 1, output[-3000:]
    assert f"`wandb sync {folder}`" in output
