"""Run names for runs created without one: ``<adjective>-<noun>-<0..1000>``, as MLflow makes.

Our own short word lists (MLflow's are not copied); the shape and the 20-character cap are
MLflow's, so names look the same in the UI and in searches on ``attributes.run_name``.
"""

from __future__ import annotations

import random

MAX_LENGTH = 20
_ATTEMPTS = 10

ADJECTIVES = (
    "amber", "bold", "brave", "bright", "calm", "clever", "cosmic", "crisp", "curious", "dapper",
    "eager", "fancy", "fleet", "gentle", "glad", "golden", "grand", "happy", "hardy", "honest",
    "jolly", "keen", "kind", "lively", "lucky", "mellow", "merry", "mighty", "nimble", "noble",
    "patient", "plucky", "proud", "quick", "quiet", "rapid", "regal", "rustic", "serene", "sharp",
    "shiny", "silent", "sleek", "smooth", "snappy", "solid", "spry", "steady", "sunny", "swift",
    "tidy", "upbeat", "valiant", "vivid", "warm", "wise", "witty", "zesty",
)  # fmt: skip

NOUNS = (
    "badger", "beaver", "bison", "crane", "cricket", "dingo", "dolphin", "eagle", "falcon",
    "ferret", "finch", "fox", "gecko", "gull", "hare", "hawk", "heron", "ibis", "jackal", "jay",
    "koala", "lark", "lemur", "lynx", "marten", "mole", "moose", "newt", "ocelot", "otter", "owl",
    "panda", "pika", "puffin", "quail", "raven", "robin", "seal", "shrew", "skunk", "sparrow",
    "squid", "stoat", "swan", "tapir", "tern", "toad", "trout", "vole", "walrus", "wolf", "wren",
    "yak", "zebra",
)  # fmt: skip


def random_run_name(rng: random.Random | None = None) -> str:
    """A name like ``swift-otter-417``, at most 20 characters."""
    choose = rng or random
    name = ""
    for _ in range(_ATTEMPTS):
        name = f"{choose.choice(ADJECTIVES)}-{choose.choice(NOUNS)}-{choose.randint(0, 1000)}"
        if len(name) <= MAX_LENGTH:
            return name
    return name[:MAX_LENGTH]
