"""Where a new model version's files are, and whether the client may point there. Pure.

MLflow's ``_create_model_version`` handler checks that a version's ``source`` lies inside
the run (``run_id``) or logged model (``model_id``) that the request names, so a registry
user cannot register, and later download, files of someone else's run or of the server's
disk. The rules here are those of ``_validate_source_run``, ``_validate_source_model`` and
``_validate_non_local_source_contains_relative_paths``, with their messages; the lookups
they need (a run's artifact URI, a logged model's location) are done by the caller.
"""

from __future__ import annotations

import posixpath
import re
import urllib.parse
from dataclasses import dataclass

from runstream.schemas.errors import InvalidParameterValue

MODEL_ID = re.compile(r"^m-[0-9a-f]{32}$")
_PROXY_PARTS = ("api", "2.0", "mlflow-artifacts", "artifacts")


@dataclass(frozen=True, slots=True)
class ModelsUri:
    """A parsed ``models:/`` URI: a logged model's id, or a registered version reference."""

    model_id: str | None = None
    name: str | None = None
    version: int | None = None
    stage: str | None = None
    alias: str | None = None


def improper(uri: str) -> InvalidParameterValue:
    return InvalidParameterValue(
        f"Not a proper models:/ URI: {uri}. Models URIs must be of the form "
        "'models:/model_name/suffix' or 'models:/model_name@alias' where suffix is a model "
        "version, stage, or the string 'latest' and where alias is a registered model alias. "
        "Only one of suffix or alias can be defined at a time."
    )


def parse_models_uri(uri: str) -> ModelsUri:
    """MLflow's ``_parse_model_uri`` for the ``models`` scheme."""
    parsed = urllib.parse.urlparse(uri, allow_fragments=False)
    path = parsed.path
    if parsed.scheme != "models" or not path.startswith("/") or len(path) <= 1:
        raise improper(uri)
    parts = path.lstrip("/").split("/")
    if len(parts) > 2 or parts[0].strip() == "":
        raise improper(uri)
    if len(parts) == 2:
        name, suffix = parts
        if suffix.strip() == "":
            raise improper(uri)
        if suffix.isdigit():
            return ModelsUri(name=name, version=int(suffix))
        if suffix.lower() == "latest":
            return ModelsUri(name=name)
        return ModelsUri(name=name, stage=suffix)
    if "@" in path:
        name, _, alias = parts[0].rpartition("@")
        if not name or alias.strip() == "":
            raise improper(uri)
        return ModelsUri(name=name, alias=alias)
    return ModelsUri(model_id=parts[0])


def invalid_source(source: str, id_name: str) -> InvalidParameterValue:
    return InvalidParameterValue(
        f"Invalid model version source: '{source}'. The {id_name} request parameter must "
        "identify the resource that contains the source."
    )


def is_local(source: str) -> bool:
    scheme = urllib.parse.urlparse(source).scheme
    return scheme in ("", "file") or (len(scheme) == 1 and scheme.isalpha())  # C:\ paths


def check_no_relative_parts(source: str) -> None:
    """No ``..`` (however quoted) and nothing that resolves elsewhere than written."""
    unquoted = source
    while (step := urllib.parse.unquote_plus(unquoted)) != unquoted:
        unquoted = step
    path = re.sub(r"/+", "/", urllib.parse.urlparse(unquoted).path.rstrip("/"))
    bad = "\x00" in path or any(p == ".." for p in unquoted.split("/"))
    if bad or (path and posixpath.normpath(path) != path):
        raise InvalidParameterValue(
            f"Invalid model version source: '{unquoted}'. If supplying a source as an http, "
            "https, local file path, ftp, objectstore, or mlflow-artifacts uri, an absolute "
            "path must be provided without relative path references present. "
            "Please provide an absolute path."
        )


def _uri_parts(uri: str) -> tuple[str, str, tuple[str, ...]]:
    parsed = urllib.parse.urlsplit(uri)
    parts = []
    for part in parsed.path.split("/"):
        if part:
            while (step := urllib.parse.unquote(part)) != part:
                part = step
            parts.append(part)
    return parsed.scheme.lower(), parsed.netloc.lower(), tuple(parts)


def is_within(source: str, root: str) -> bool:
    s_scheme, s_host, s_parts = _uri_parts(source)
    r_scheme, r_host, r_parts = _uri_parts(root)
    return (
        s_scheme == r_scheme
        and s_host == r_host
        and bool(r_parts)
        and s_parts[: len(r_parts)] == r_parts
    )


def is_proxied_artifact(source: str) -> bool:
    scheme, _, parts = _uri_parts(source)
    if scheme == "mlflow-artifacts":
        return True
    n = len(_PROXY_PARTS)
    return scheme in ("http", "https") and any(
        parts[i : i + n] == _PROXY_PARTS for i in range(len(parts) - n + 1)
    )


def local_refusal(source: str, id_name: str) -> InvalidParameterValue:
    return InvalidParameterValue(
        f"Invalid model version source: '{source}'. To use a local path as a model version "
        f"source, the {id_name} request parameter has to be specified and the local path has "
        f"to be contained within the artifact directory of the run specified by the {id_name}."
    )


def runs_uri_run_id(source: str) -> str:
    """The run id of ``runs:/<run_id>/<path>`` (MLflow's ``parse_runs_uri``)."""
    parsed = urllib.parse.urlparse(source)
    path = parsed.path
    if not path.startswith("/") or len(path) <= 1:
        raise InvalidParameterValue(
            f"Not a proper runs:/ URI: {source}. "
            "Runs URIs must be of the form 'runs:/<run_id>/run-relative/path/to/artifact'"
        )
    return path[1:].split("/", 1)[0]


def check_run_source(source: str, run_id: str, run_artifact_uri: str | None) -> None:
    """``_validate_source_run``: ``run_artifact_uri`` is the named run's, None if no run."""
    if is_local(source):
        raise local_refusal(source, "run_id")
    check_no_relative_parts(source)
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme == "runs":
        if parsed.netloc or runs_uri_run_id(source) != run_id or not run_id:
            raise invalid_source(source, "run_id")
        return
    if parsed.scheme == "models" and (
        parsed.netloc or parse_models_uri(source).model_id is not None
    ):
        raise invalid_source(source, "model_id")
    if is_proxied_artifact(source):
        if run_id and run_artifact_uri is not None and is_within(source, run_artifact_uri):
            return
        raise invalid_source(source, "run_id")


def check_model_source(source: str, model_id: str, model_location: str | None) -> None:
    """``_validate_source_model``: ``model_location`` is the named logged model's."""
    if is_local(source):
        raise local_refusal(source, "model_id")
    check_no_relative_parts(source)
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme == "models":
        if parsed.netloc:
            raise invalid_source(source, "model_id")
        source_model = parse_models_uri(source).model_id
        if source_model is not None:
            if model_id and source_model == model_id and model_location is not None:
                return
            raise invalid_source(source, "model_id")
    if parsed.scheme == "runs":
        raise invalid_source(source, "model_id")
    if is_proxied_artifact(source):
        if model_location is not None and is_within(source, model_location):
            return
        raise invalid_source(source, "model_id")


def parse_models_uri_or_none(uri: str) -> str | None:
    """The logged model id of a ``models:/<model_id>`` URI, else None."""
    if urllib.parse.urlparse(uri).scheme != "models":
        return None
    try:
        return parse_models_uri(uri).model_id
    except InvalidParameterValue:
        return None
