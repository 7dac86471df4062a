"""W&B around a run: offline unless the user has credentials, runs named after what was built,
one group per sweep, and never a run lost to W&B: a server that cannot be used sends the run
offline (to sync later), and a W&B failure at the end is a warning."""

import os
import ssl
import threading
import urllib.error
import urllib.request
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from xlstm_exp import console
from xlstm_exp.user_error import UserError

# What wandb.init accepts as WANDB_MODE; anything else fails there with a validation dump.
WANDB_MODES = ("online", "offline", "disabled", "shared", "dryrun", "run")
LOCAL_MODES = ("offline", "dryrun", "disabled")
# Seconds to wait for the W&B server unless `logger.wandb.settings.init_timeout` says otherwise;
# W&B's own default, 90 s, plus its retries spent almost two minutes on a node without internet.
INIT_TIMEOUT = 20.0


def configure_wandb_mode() -> None:
    """W&B runs offline unless the user has credentials (an API key or `wandb login`) or chose a
    mode, so a machine without an account never prompts for a login. A mode W&B does not know
    stops the run before anything is built."""
    mode = os.environ.get("WANDB_MODE")
    if mode is not None and mode not in WANDB_MODES:
        raise UserError(
            f"WANDB_MODE={mode} is not a W&B mode; set it to online, offline or disabled, or "
            "unset it (offline unless W&B credentials exist)"
        )
    netrc = Path.home() / ".netrc"
    logged_in = netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")
    if not logged_in and "WANDB_API_KEY" not in os.environ and "WANDB_MODE" not in os.environ:
        os.environ["WANDB_MODE"] = "offline"


def wandb_options(labels: list[str], output_dir: Path) -> dict:
    """Name and tag a W&B run after its model, block (as built) and data, and put all jobs of
    one multirun into one group (named after the sweep folder they share) so that a sweep reads
    as one dashboard."""
    options = {"name": "-".join(labels), "tags": labels}
    if HydraConfig.get().mode == RunMode.MULTIRUN:
        options["group"] = output_dir.parent.name
    return options


def build_loggers(cfg: DictConfig, labels: list[str], output_dir: Path) -> list:
    """The `logger` group's loggers; a W&B run is started here, before anything is built."""
    loggers = []
    for entry in (cfg.get("logger") or {}).values():
        is_wandb = entry.get("_target_", "").endswith("WandbLogger")
        logger = instantiate(entry, **(wandb_options(labels, output_dir) if is_wandb else {}))
        if isinstance(logger, WandbLogger):
            # Lightning always passes `anonymous` (as None), which W&B warns has no effect.
            logger._wandb_init.pop("anonymous", None)
            start_wandb(logger)
        loggers.append(logger)
    return loggers


def server_problem(base_url: str, timeout: float) -> str | None:
    """Why the W&B server at `base_url` cannot be used now, or None when it answers. Asked in a
    thread given `timeout` in all, since a socket timeout does not bound the name lookup.
    Any answer but a server error counts: whether the key is good is for W&B to say."""
    found: list[str | None] = []

    def ask() -> None:
        try:
            urllib.request.urlopen(f"{base_url.rstrip('/')}/healthz", timeout=timeout).close()
            found.append(None)
        except urllib.error.HTTPError as error:
            found.append(f"it answered HTTP {error.code}" if error.code >= 500 else None)
        except urllib.error.URLError as error:
            # A TLS failure means it is reachable: W&B verifies with its own certificates.
            tls = isinstance(error.reason, ssl.SSLError)
            found.append(None if tls else f"cannot reach it ({error.reason})")
        except OSError as error:  # a timeout or reset after connecting
            found.append(f"cannot reach it ({error})")

    thread = threading.Thread(target=ask, daemon=True)
    thread.start()
    thread.join(timeout)
    if found:
        return found[0]
    return f"no answer within {timeout:g} s (logger.wandb.settings.init_timeout)"


def start_wandb(logger: WandbLogger) -> None:
    """Create the logger's W&B run now, where a failure can still be handled (Lightning creates
    it at first use). An online run whose server is unreachable, slow to answer (over its
    `settings.init_timeout` seconds) or refuses it (a bad key) is recorded offline instead, with
    one warning that says how to upload it later."""
    import wandb  # here, so that runs without W&B never pay for its import

    settings = logger._wandb_init["settings"] = dict(logger._wandb_init.get("settings") or {})
    timeout = float(settings.setdefault("init_timeout", INIT_TIMEOUT))
    mode = logger._wandb_init.get("mode") or os.environ.get("WANDB_MODE")
    if logger._offline or mode in LOCAL_MODES or rank_zero_only.rank != 0:
        _ = logger.experiment  # creates the run (on other ranks, a stand-in)
        return
    base_url = wandb.setup().settings.base_url
    problem = server_problem(base_url, timeout)
    if problem is None:
        try:
            _ = logger.experiment
            return
        except Exception as error:  # W&B raises CommError, AuthenticationError, UsageError...
            problem = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
    logger._wandb_init["mode"] = "offline"
    folder = Path(logger.experiment.dir).parent
    console.warning(
        f"W&B server {base_url}: {problem}; this run is recorded offline in {folder}; "
        f"upload it later with `wandb sync {folder}`"
    )


def publish_summary(loggers: list, metrics: dict, is_global_zero: bool) -> None:
    """The run's final metrics as the W&B run summary (what a dashboard table shows); a W&B
    failure here is a warning, since metrics.json is written after it."""
    for logger in loggers:
        if isinstance(logger, WandbLogger) and is_global_zero:
            try:
                logger.experiment.summary.update(metrics)
            except Exception as error:
                console.warning(f"W&B did not take the run summary ({error}); see metrics.json")


def wandb_run(loggers: list) -> str | None:
    """Where to find the W&B run: its page online, its folder offline (for `wandb sync`)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            try:
                run = logger.experiment
                return run.dir if run.offline else run.url
            except Exception:
                return None  # publish_summary or finish_wandb reports the failure
    return None


def finish_wandb(loggers: list) -> None:
    """Close the W&B run, so that each job of a sweep gets its own. A failure (an upload cut
    short) is a warning: the run's checkpoints and metrics do not depend on W&B."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            try:
                logger.experiment.finish()
            except Exception as error:
                console.warning(
                    f"W&B did not finish the run ({error}); what it recorded is under "
                    f"{Path(logger.save_dir or '.') / 'wandb'}, for `wandb sync`"
                )
