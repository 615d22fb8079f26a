"""Error JSON equals what MLflow 3 sends for the same error code (its exception is the oracle)."""

from __future__ import annotations

import json

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos import databricks_pb2

from runstream.schemas import errors


def every_error_class() -> list[type[errors.RunstreamError]]:
    found = []
    pending = [errors.RunstreamError]
    while pending:
        cls = pending.pop()
        found.append(cls)
        pending.extend(cls.__subclasses__())
    return found


@pytest.mark.parametrize("cls", every_error_class(), ids=lambda c: c.__name__)
def test_error_json_matches_mlflow(cls: type[errors.RunstreamError]) -> None:
    ours = cls.__new__(cls)
    errors.RunstreamError.__init__(ours, "boom")
    ours = ours.to_json()
    theirs = json.loads(
        MlflowException(
            "boom", error_code=getattr(databricks_pb2, cls.error_code)
        ).serialize_as_json()
    )
    assert ours == theirs
