"""MLflow's permission levels and how a caller's permission on a resource is resolved.

Facts carried over from MLflow 3.17's basic-auth app: five grantable levels (READ, USE, EDIT,
MANAGE, DENY), NO_PERMISSIONS as a possible default but never a grant, a grant on the resource
else the configured default, admins allowed everything. Pure: no I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

from runstream.schemas.errors import InvalidParameterValue


@dataclass(frozen=True, slots=True)
class Permission:
    name: str
    can_read: bool
    can_use: bool
    can_update: bool
    can_delete: bool
    can_manage: bool

    def allows(self, action: Action) -> bool:
        return bool(getattr(self, action.value))


class Action(Enum):
    """What a request does to its resource; the value names the Permission flag it needs."""

    READ = "can_read"
    USE = "can_use"
    UPDATE = "can_update"
    DELETE = "can_delete"
    MANAGE = "can_manage"


READ = Permission("READ", True, False, False, False, False)
USE = Permission("USE", True, True, False, False, False)
EDIT = Permission("EDIT", True, True, True, False, False)
MANAGE = Permission("MANAGE", True, True, True, True, True)
DENY = Permission("DENY", False, False, False, False, False)
NO_PERMISSIONS = Permission("NO_PERMISSIONS", False, False, False, False, False)

BY_NAME = {p.name: p for p in (READ, USE, EDIT, MANAGE, DENY, NO_PERMISSIONS)}
GRANTABLE = ("READ", "USE", "EDIT", "MANAGE", "DENY")
"""MLflow 3.17 refuses a NO_PERMISSIONS grant: no grant plus the default already says it."""

EXPERIMENT = "experiment"
REGISTERED_MODEL = "registered_model"
RESOURCE_TYPES = (EXPERIMENT, REGISTERED_MODEL)
"""The resource types runstream grants on (MLflow's prompts, scorers, gateway objects and
the wildcard sub-resource tiers have no counterpart here)."""


def permission_named(name: object) -> Permission:
    if not isinstance(name, str) or name not in BY_NAME:
        raise InvalidParameterValue(
            f"Invalid permission '{name}'. Valid permissions are: {tuple(BY_NAME)}"
        )
    return BY_NAME[name]


def grantable(name: object) -> str:
    """The permission name of a grant request, refused with MLflow's message otherwise."""
    permission_named(name)
    assert isinstance(name, str)
    if name not in GRANTABLE:
        raise InvalidParameterValue(
            f"Invalid permission '{name}' for a resource grant. Resource-level grants accept "
            f"only: {tuple(sorted(GRANTABLE))}."
        )
    return name


def resource_type(name: object) -> str:
    if name == "workspace":
        raise InvalidParameterValue(
            "resource_type 'workspace' is not supported: runstream has no workspaces."
        )
    if not isinstance(name, str) or name not in RESOURCE_TYPES:
        raise InvalidParameterValue(
            f"Invalid resource type '{name}'. Valid resource types are: {RESOURCE_TYPES}"
        )
    return name


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking: a verified user, with the grants they hold."""

    user_id: int
    username: str
    is_admin: bool
    grants: Mapping[tuple[str, str], str]
    """(resource type, resource id) -> permission name."""

    def permission_on(self, kind: str, resource_id: str, default: Permission) -> Permission:
        """MLflow's resolution: admins manage everything; a grant, else the default."""
        if self.is_admin:
            return MANAGE
        name = self.grants.get((kind, resource_id))
        return default if name is None else BY_NAME[name]

    def may(self, action: Action, kind: str, resource_id: str, default: Permission) -> bool:
        return self.permission_on(kind, resource_id, default).allows(action)

    def readable_exceptions(self, kind: str, default: Permission) -> frozenset[str]:
        """Ids whose readability differs from the default's (the grants that flip it)."""
        return frozenset(
            resource_id
            for (k, resource_id), name in self.grants.items()
            if k == kind and BY_NAME[name].can_read != default.can_read
        )
