"""The README's Python snippets run as written against a live server (the newcomer path).

Only the address changes: the README says http://127.0.0.1:5000, the test's server listens
on a free port.
"""

from __future__ import annotations

import re
from pathlib import Path

import mlflow
import pytest

README = (Path(__file__).parents[3] / "README.md").read_text()
SNIPPETS = re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def test_the_readme_has_snippets() -> None:
    assert len(SNIPPETS) >= 2


@pytest.mark.parametrize("index", range(len(SNIPPETS)))
def test_readme_snippet_runs(compat_target: object, index: int) -> None:
    target = compat_target
    if getattr(target, "name", "") != "runstream":
        pytest.skip("the README's SDK snippet needs runstream")
    uri: str = target.uri  # type: ignore[attr-defined]
    code = SNIPPETS[index].replace("http://127.0.0.1:5000", uri)
    namespace: dict[str, object] = {}
    try:
        exec(compile(code, f"README.md snippet {index + 1}", "exec"), namespace)
    finally:
        if mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(uri)
    if "history" in namespace:  # the SDK snippet reads back what it logged
        history = namespace["history"]
        assert len(history) == 1_000  # type: ignore[arg-type]
