"""Run inputs and outputs: datasets and models a run used, models it produced.

Field docs are the wire-format reference. Every event names its run and travels on the run's
shard, after the run's creation and in order with its other events. One event per dataset or
model keeps each event flat (strings, numbers and pairs only), as the codec carries them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

Pairs = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class DatasetInputLogged:
    """A run used a dataset (MLflow's ``DatasetInput``).

    Datasets are kept once per experiment, name and digest: the first one logged keeps its
    source, schema and profile. A run's input of a dataset is kept once too, with the input
    tags of its first logging (MLflow's ``_log_inputs_impl``).
    """

    TYPE: ClassVar[str] = "dataset_input_logged"
    VERSION: ClassVar[int] = 1

    run_id: str
    name: str
    """At most 500 characters."""
    digest: str
    """At most 36 characters."""
    source_type: str
    """E.g. ``local``, ``http``, ``code``; at most 36 characters."""
    source: str
    """JSON describing where the data came from; at most 65,535 characters."""
    time: int
    """Milliseconds since the epoch; a run's inputs are listed in the order they were logged."""
    schema: str = ""
    """JSON schema of the data ("" for none); at most 1,048,575 characters."""
    profile: str = ""
    """JSON summary of the data ("" for none); at most 16,777,215 characters."""
    tags: Pairs = ()
    """Input tags, e.g. ``mlflow.data.context``; keys at most 255, values 500 characters."""


@dataclass(frozen=True, slots=True)
class ModelInputLogged:
    """A run used a logged model (MLflow's ``LoggedModelInput``)."""

    TYPE: ClassVar[str] = "model_input_logged"
    VERSION: ClassVar[int] = 1

    run_id: str
    model_id: str
    time: int
    """Milliseconds since the epoch."""


@dataclass(frozen=True, slots=True)
class ModelOutputLogged:
    """A run produced a logged model at a step (MLflow's ``LoggedModelOutput``)."""

    TYPE: ClassVar[str] = "model_output_logged"
    VERSION: ClassVar[int] = 1

    run_id: str
    model_id: str
    step: int
    time: int
    """Milliseconds since the epoch."""


RunInputEvent = DatasetInputLogged | ModelInputLogged | ModelOutputLogged

RUN_INPUT_EVENT_TYPES: tuple[type[RunInputEvent], ...] = (
    DatasetInputLogged,
    ModelInputLogged,
    ModelOutputLogged,
)
