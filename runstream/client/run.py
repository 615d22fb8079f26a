"""``Run``: what a training loop holds. Logging appends to memory; a sender thread ships it."""

from __future__ import annotations

import getpass
import logging
import os
import random
import sys
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from runstream.client import lifecycle, notices
from runstream.client.buffer import RunBuffer, check_key
from runstream.client.config import ClientConfig
from runstream.client.delivery import resolve_experiment
from runstream.client.outbox import RunLink
from runstream.client.sender import Sender
from runstream.client.senders import sender_for
from runstream.client.transport import HTTPError, Transport, TransportError
from runstream.schemas import constants as c
from runstream.schemas.codec import event_to_obj
from runstream.schemas.errors import InvalidParameterValue
from runstream.schemas.runs import ParamsLogged, RunCreated, RunTagsSet, RunUpdated
from runstream.schemas.validation import (
    validate_experiment_name,
    validate_param_value,
    validate_run_id,
    validate_tag_value,
)

logger = logging.getLogger(__name__)

END_STATUSES = ("FINISHED", "FAILED", "KILLED")
START_TIMEOUT = 1.5
"""Seconds ``start_run`` waits for the experiment lookup before deferring it to the sender:
short enough that a script whose server is down hears so within two seconds."""


@dataclass(frozen=True, slots=True)
class RunStats:
    """Counters of one run's delivery, for this process (a forked child counts its own)."""

    points_logged: int
    """Points accepted by ``log``."""
    points_sent: int
    """Points acknowledged by the server."""
    points_pending: int
    """Points in memory or in the spool, not acknowledged yet."""
    points_spooled: int
    """Points written to the spool directory (they are sent from there later)."""
    points_dropped: int
    """Points refused by ``log`` because the buffer was full (the sender was stuck)."""
    points_rejected: int
    """Points in batches the server refused (4xx), kept under ``spool/rejected``."""
    batches_sent: int
    retries: int
    """Failed attempts that were retried (connection errors, 5xx, 429/503)."""
    failures: int
    """Batches the server refused for good."""
    last_error: str | None


class Run:
    """A run being logged to. Create it with ``runstream.start_run``.

    Thread-safe; usable as a context manager (``FINISHED`` on normal exit, ``KILLED`` on
    ``KeyboardInterrupt``/``SystemExit``, ``FAILED`` on any other exception).
    """

    def __init__(
        self,
        run_id: str,
        config: ClientConfig,
        *,
        experiment_id: str | None = None,
        experiment_name: str | None = None,
        name: str = "",
        started_in: str | None = None,
    ) -> None:
        self._run_id = run_id
        self._name = name
        self._config = config
        self._pid = os.getpid()
        self._finished = False
        self._params: dict[str, str] = {}
        self._buffer = RunBuffer(config.max_buffer_points, config.batch_points, self._on_full)
        self._link = RunLink(
            run_id, self._buffer, experiment_id, experiment_name, started_in=started_in
        )
        self._sender: Sender | None = None

    # -- identity ---------------------------------------------------------------------------

    @property
    def run_id(self) -> str:
        """The run's id (32 hex characters, chosen by the client)."""
        return self._run_id

    @property
    def experiment_id(self) -> str | None:
        """The experiment's id; None while the server has not been reached yet."""
        return self._link.experiment_id

    @property
    def name(self) -> str:
        """The run's name (``mlflow.runName``)."""
        return self._name

    @property
    def url(self) -> str:
        """The server this run logs to."""
        return self._config.url

    @property
    def write_token(self) -> str:
        """Token of the newest delivered batch: pass it as ``wait_for`` to ``Client`` reads
        to see everything delivered so far (after ``flush()``)."""
        return self._link.token

    @property
    def finished(self) -> bool:
        """True once ``finish`` has been called."""
        return self._finished

    def __repr__(self) -> str:
        return f"<runstream.Run {self._run_id} name={self._name!r} url={self._config.url!r}>"

    # -- logging ----------------------------------------------------------------------------

    def log(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Log one point per metric: ``run.log({"loss": 0.1, "acc": 0.9}, step=3)``.

        No I/O: the points go to an in-memory buffer that a background thread sends. Keys
        follow MLflow's rules (``ValueError`` otherwise); values are numbers (int, float,
        numpy scalars, 0-d tensors; ``TypeError`` for bool, str and others), NaN and ±inf
        included. ``step=None`` uses the key's next auto step: 0, 1, 2, ... per key, and
        after an explicit step ``s`` the next auto step of each key logged is ``s + 1``.
        The timestamp is the call time in milliseconds. Errors are raised here, before any
        point of the call is kept.
        """
        self._buffer.log(metrics, step)

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Log params (values are turned into strings, as MLflow does).

        A param keeps its first value: logging a different value for a key raises
        ``ValueError`` here (the server would refuse it too).
        """
        pairs = []
        for key, value in params.items():
            check_key(key, "param")
            text = str(value)
            try:
                validate_param_value(text, f"params[{key!r}]")
            except InvalidParameterValue as exc:
                raise ValueError(exc.message) from None
            old = self._params.get(key)
            if old is not None and old != text:
                raise ValueError(
                    f"param {key!r} was already logged with value {old!r}; a param's value"
                    f" cannot change (new value {text!r})"
                )
            pairs.append((key, text))
        if not pairs:
            return
        for key, text in pairs:
            self._params[key] = text
        self._add_event(event_to_obj(ParamsLogged(self._run_id, tuple(pairs))))

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set run tags (values are turned into strings); a later value replaces an earlier one."""
        pairs = tuple(_tag_pairs(tags))
        if pairs:
            self._add_event(event_to_obj(RunTagsSet(self._run_id, pairs)))

    def _add_event(self, obj: dict[str, Any]) -> None:
        self._ensure_open()
        self._buffer.add_event(obj)
        if self._sender is None:
            self._attach_sender()

    def _ensure_open(self) -> None:
        if self._finished:
            raise RuntimeError(f"run {self._run_id} is finished")

    # -- delivery ---------------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything logged so far is delivered (or refused by the server).

        Returns False when ``timeout`` seconds (default ``RUNSTREAM_FLUSH_TIMEOUT``) pass
        first; the data stays queued and keeps being retried. Never raises for transport
        errors: see ``stats()``.
        """
        sender = self._sender or self._attach_sender()
        return sender.flush(self._link, self._config.flush_timeout if timeout is None else timeout)

    def finish(self, status: str = "FINISHED", timeout: float | None = None) -> bool:
        """End the run with ``status`` (FINISHED, FAILED or KILLED) and deliver its data.

        Waits up to ``timeout`` seconds (default ``RUNSTREAM_FLUSH_TIMEOUT``); what is not
        delivered by then is spooled to disk and sent later (by the next run's sender or
        ``runstream sync``). Returns True when everything was delivered. Calling it again
        does nothing. In a process other than the one that started the run (a forked
        child), ``finish`` only delivers: the run's status is the starter's to set.
        """
        if status not in END_STATUSES:
            raise ValueError(f"status must be one of {END_STATUSES}, got {status!r}")
        if self._finished:
            return True
        if os.getpid() == self._pid:
            update = RunUpdated(self._run_id, status, time.time_ns() // 1_000_000)
            self._buffer.add_event(event_to_obj(update))
        self._finished = True
        self._buffer.close()
        lifecycle.forget(self)
        sender = self._sender or self._attach_sender()
        return sender.close_run(
            self._link, self._config.flush_timeout if timeout is None else timeout
        )

    def stats(self) -> RunStats:
        """Delivery counters of this run in this process."""
        link = self._link
        return RunStats(
            points_logged=self._buffer.logged,
            points_sent=link.points_sent,
            points_pending=self._buffer.pending_points + max(0, link.queued_points),
            points_spooled=link.points_spooled,
            points_dropped=self._buffer.dropped,
            points_rejected=link.points_rejected,
            batches_sent=link.batches_sent,
            retries=link.retries,
            failures=link.failures,
            last_error=link.last_error,
        )

    def _on_full(self) -> None:
        try:
            (self._sender or self._attach_sender()).wake()
        except Exception:  # never into the training loop
            logger.exception("runstream: waking the sender failed")

    def _attach_sender(self) -> Sender:
        sender = sender_for(self._config)
        sender.register(self._link)
        self._sender = sender
        return sender

    def _after_fork_child(self) -> None:
        """Fresh buffer, counters and (lazily) sender in a forked child; steps carry on."""
        self._buffer.reset_after_fork()
        link = self._link
        self._link = RunLink(
            self._run_id,
            self._buffer,
            link.experiment_id,
            link.experiment_name,
            taken_seq=self._buffer.seq,
            done_seq=self._buffer.seq,
        )
        self._sender = None

    # -- context manager --------------------------------------------------------------------

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            status = "FINISHED"
        elif issubclass(exc_type, KeyboardInterrupt | SystemExit):
            status = "KILLED"
        else:
            status = "FAILED"
        self.finish(status)


def _tag_pairs(tags: Mapping[str, Any]) -> list[tuple[str, str]]:
    pairs = []
    for key, value in tags.items():
        check_key(key, "tag")
        text = "" if value is None else str(value)
        try:
            validate_tag_value(text, f"tags[{key!r}]")
        except InvalidParameterValue as exc:
            raise ValueError(exc.message) from None
        pairs.append((key, text))
    return pairs


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def _source_name() -> str:
    main = sys.argv[0] if sys.argv and sys.argv[0] else ""
    return os.path.abspath(main) if main and main != "-c" else "<console>"


_ADJECTIVES = ("brave", "calm", "eager", "fancy", "gentle", "jolly", "lucky", "quiet", "swift")
_NOUNS = ("bee", "crane", "fox", "hare", "lynx", "otter", "owl", "seal", "wren")


def _default_name() -> str:
    return f"{random.choice(_ADJECTIVES)}-{random.choice(_NOUNS)}-{random.randint(100, 999)}"


def start_run(
    experiment: str | None = None,
    name: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    url: str | None = None,
    *,
    experiment_id: str | None = None,
    run_id: str | None = None,
    token: str | None = None,
) -> Run:
    """Start a run and return it; logging to it never blocks on the network.

    ``experiment`` is an experiment name, created when missing (default ``"Default"``);
    ``experiment_id`` names one by id instead. ``url`` is the server (else ``RUNSTREAM_URL``,
    else an http(s) ``MLFLOW_TRACKING_URI``, else ``http://127.0.0.1:5000``). The run gets a
    client-made id and MLflow's system tags (``mlflow.runName``, ``mlflow.user``,
    ``mlflow.source.name``, ``mlflow.source.type``), so it is an ordinary run to every
    MLflow client. When the server cannot be reached, the run starts anyway: its creation and
    data are sent when the server is back (or spooled at exit for ``runstream sync``).

    ``run_id`` attaches to an existing run instead (for example a second process logging
    to the same run): nothing is created, and ``finish`` sets that run's status.

    ``token`` is an API token of a server with auth on (else ``RUNSTREAM_TOKEN``, else
    MLflow's ``MLFLOW_TRACKING_TOKEN`` or ``MLFLOW_TRACKING_USERNAME``/``PASSWORD``).
    """
    config = ClientConfig.from_env(url, token=token)
    if run_id is not None:
        validate_run_id(run_id)
        run = Run(run_id, config, experiment_id=experiment_id, name=name or "")
        _extra_events(run, params, tags)
        lifecycle.track(run)
        # Nothing to create, so no event starts the sender: start it now, so that points
        # go out every flush interval (and an unreachable server is reported) from the start.
        if run._sender is None:
            run._attach_sender()
        return run
    run_name = _default_name() if name is None else name
    if len(run_name) > c.MAX_RUN_NAME_LENGTH:
        raise ValueError(f"run name exceeds {c.MAX_RUN_NAME_LENGTH} characters")
    exp_name: str | None = None
    if experiment_id is None:
        try:
            exp_name = validate_experiment_name(experiment or "Default")
        except InvalidParameterValue as exc:
            raise ValueError(exc.message) from None
        experiment_id = _lookup_experiment(config, exp_name)
    all_tags = {
        "mlflow.runName": run_name,
        "mlflow.user": _user(),
        "mlflow.source.name": _source_name(),
        "mlflow.source.type": "LOCAL",
    }
    all_tags.update({k: ("" if v is None else str(v)) for k, v in (tags or {}).items()})
    new_id = uuid.uuid4().hex
    run = Run(
        new_id,
        config,
        experiment_id=experiment_id,
        experiment_name=None if experiment_id else exp_name,
        started_in=exp_name,
        name=run_name,
    )
    created = RunCreated(
        run_id=new_id,
        experiment_id=experiment_id or "",
        user_id=all_tags["mlflow.user"],
        run_name=run_name,
        start_time=time.time_ns() // 1_000_000,
        artifact_uri="",
        tags=tuple(_tag_pairs(all_tags)),
    )
    run._add_event(event_to_obj(created))
    if params:
        run.log_params(params)
    lifecycle.track(run)
    return run


def _extra_events(
    run: Run, params: Mapping[str, Any] | None, tags: Mapping[str, Any] | None
) -> None:
    if tags:
        run.set_tags(tags)
    if params:
        run.log_params(params)


def _lookup_experiment(config: ClientConfig, name: str) -> str | None:
    transport = Transport(
        config.url, min(START_TIMEOUT, config.request_timeout), dict(config.headers)
    )
    try:
        return resolve_experiment(transport, name)
    except TransportError as exc:
        # The run starts offline; its creation goes with its first batch that gets through.
        notices.no_server(config.url, config.spool_dir, str(exc), stacklevel=3)
        return None
    except HTTPError as exc:
        if 400 <= exc.status < 500 and exc.status not in (408, 429):
            raise ValueError(f"experiment {name!r}: {exc.message or exc}") from None
        logger.warning("runstream: experiment lookup failed (%s); retried by the sender", exc)
        return None
    finally:
        transport.close()


init = start_run
"""Alias of ``start_run``."""
