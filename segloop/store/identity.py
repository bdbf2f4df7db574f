"""Who is acting and what their role lets them do: identities, roles, permission checks, the audit trail.

An `Identity` is the person behind an action: the subject (``sub``) and e-mail address their OpenID
Connect provider vouches for when sign-in is configured, or the local identity (``local:<OS user>``)
of single-user local mode, which may do everything, as SegLoop always allowed.

Roles (`segloop.store.vocabulary.Role`), weakest first: viewer (look), annotator (segment, correct,
save), reviewer (approve), admin (retrain, activate, roll back, manage roles, read the audit trail);
each may do what the ones before it may. A signed-in person's role comes from their e-mail address:

1. listed in SEGLOOP_ADMIN or in the roles file's ``admins``: admin (the first admin always comes
   from configuration, and can never be demoted from the app);
2. a role given to the address in the app (the ``roles`` table), else in the roles file;
3. a role given to its domain (``@example.org``) in the app, else in the roles file;
4. else SEGLOOP_DEFAULT_ROLE, else the roles file's ``default``, else "viewer" ("none" locks strangers out).

The roles file is SEGLOOP_ROLES (a path) or ``<workspace>/roles.toml``::

    admins = ["lead@example.org"]
    default = "viewer"
    [roles]
    "ann@example.org" = "annotator"
    "@radiology.example.org" = "reviewer"

An e-mail address the provider marks unverified (``email_verified`` false) gets the default role only.

The core checks the role itself: `authorize` is called by every mutating call of the store (saving a
label version, approving, activating, rolling back, starting and cancelling training, changing roles),
which raise `PermissionDenied`, whatever page or command asked. Each such action also appends an
entry to the audit trail in its own transaction: the ``audit_log`` table, which refuses UPDATE and
DELETE (SQLite triggers), readable by admins and exportable as CSV (`audit_csv`).
"""

from __future__ import annotations

import getpass
import json
import os
import re
import time
import tomllib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Mapping

from segloop.errors import PermissionDenied, SegLoopError
from segloop.io.writers import csv_text
from segloop.store.database import AuditEntry, Datastore, RoleAssignment, Tx
from segloop.store.vocabulary import ROLE_ORDER, AuditAction, Role

#: Path of the roles file (TOML); default: ``<workspace>/roles.toml`` when it exists.
ROLES_ENV = "SEGLOOP_ROLES"
#: E-mail addresses of the first admins, separated by commas or spaces.
ADMIN_ENV = "SEGLOOP_ADMIN"
#: The role of a signed-in person nothing else names (overrides the roles file's ``default``).
DEFAULT_ROLE_ENV = "SEGLOOP_DEFAULT_ROLE"
ROLES_FILE = "roles.toml"
#: The role recorded in the audit trail for single-user local mode.
LOCAL_ROLE = "local"

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_DOMAIN = re.compile(r"^@[^@\s]+\.[^@\s]+$")


class Action(StrEnum):
    """Something a person may or may not do; `MIN_ROLE` says which role it takes.

    Members: VIEW, SEGMENT (run the model on a scan), SAVE (a correction), APPROVE, TRAIN (start or
    cancel a fine-tuning run), ACTIVATE, ROLLBACK, MANAGE_ROLES, READ_AUDIT.
    """

    VIEW = "view"
    SEGMENT = "segment"
    SAVE = "save"
    APPROVE = "approve"
    TRAIN = "train"
    ACTIVATE = "activate"
    ROLLBACK = "rollback"
    MANAGE_ROLES = "manage_roles"
    READ_AUDIT = "read_audit"


#: The weakest role allowed each action.
MIN_ROLE: dict[Action, Role] = {
    Action.VIEW: Role.VIEWER,
    Action.SEGMENT: Role.ANNOTATOR,
    Action.SAVE: Role.ANNOTATOR,
    Action.APPROVE: Role.REVIEWER,
    Action.TRAIN: Role.ADMIN,
    Action.ACTIVATE: Role.ADMIN,
    Action.ROLLBACK: Role.ADMIN,
    Action.MANAGE_ROLES: Role.ADMIN,
    Action.READ_AUDIT: Role.ADMIN,
}

#: Each action in words, for messages ("… may not <words>").
ACTION_WORDS: dict[Action, str] = {
    Action.VIEW: "open this workspace",
    Action.SEGMENT: "run the model on a scan",
    Action.SAVE: "save label versions",
    Action.APPROVE: "approve label versions",
    Action.TRAIN: "start or cancel training runs",
    Action.ACTIVATE: "activate models",
    Action.ROLLBACK: "roll back the active model",
    Action.MANAGE_ROLES: "change roles",
    Action.READ_AUDIT: "read the audit trail",
}


def os_user() -> str:
    """The operating-system user running this process ("local" when it has no name)."""
    try:
        return getpass.getuser() or "local"
    except Exception:  # noqa: BLE001 - no passwd entry and no USER/LOGNAME (some containers)
        return "local"


@dataclass(frozen=True)
class Identity:
    """The person behind an action.

    Parameters
    ----------
    subject : str
        The provider's stable subject identifier (``sub``); ``local:<OS user>`` in local mode.
    email : str, optional
        Their e-mail address (empty in local mode).
    name : str, optional
        Display name.
    email_verified : bool, optional
        False when the provider says the address is not verified: it then maps to the default role only.
    local : bool, optional
        Single-user local mode (no sign-in configured, or the command line): every action is allowed.

    Examples
    --------
    >>> Identity.from_claims({"sub": "u-1", "email": "Ann@Example.org", "name": "Ann"}).label
    'ann@example.org'
    >>> local_identity("Dr Slicer").label
    'Dr Slicer'
    """

    subject: str
    email: str = ""
    name: str = ""
    email_verified: bool = True
    local: bool = field(default=False)

    @property
    def label(self) -> str:
        """How the identity is shown and recorded as ``author``: the e-mail, else the name, else the subject."""
        return self.email or self.name or self.subject

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> Identity:
        """The identity in an OpenID Connect ID token's claims (what Streamlit's ``st.user`` holds).

        Parameters
        ----------
        claims : mapping
            At least ``sub``; ``email``, ``email_verified`` and ``name`` (or ``preferred_username``) when present.

        Returns
        -------
        Identity
            E-mail lower-cased and stripped; not local.

        Raises
        ------
        SegLoopError
            When the claims have no subject.
        """
        sub = str(claims.get("sub") or "").strip()
        if not sub:
            raise SegLoopError("the sign-in provider sent no subject (sub) for this user")
        verified = claims.get("email_verified", True)
        if isinstance(verified, str):
            verified = verified.strip().lower() not in ("false", "0", "no")
        name = str(claims.get("name") or claims.get("preferred_username") or "").strip()
        return cls(sub, str(claims.get("email") or "").strip().lower(), name, bool(verified))


def local_identity(name: str | None = None) -> Identity:
    """The identity of single-user local mode and of the command line: ``local:<OS user>``, every right.

    Parameters
    ----------
    name : str, optional
        The name to record (e.g. the command line's ``--author``); default: the OS user.

    Returns
    -------
    Identity
    """
    user = os_user()
    return Identity(f"local:{user}", "", (name or "").strip() or user, True, local=True)


#: SegLoop itself (registering and activating the shipped model on first use).
SYSTEM = Identity("segloop:system", "", "segloop", True, local=True)


def permits(role: str | None, action: str) -> bool:
    """Whether `role` may do `action` (roles are ordered: each may do what the weaker ones may).

    Examples
    --------
    >>> permits("annotator", "save"), permits("annotator", "approve"), permits("admin", "approve")
    (True, False, True)
    >>> permits("none", "view"), permits(None, "view")
    (False, False)
    """
    if role is None or role not in Role.__members__.values():
        return False
    return ROLE_ORDER.index(Role(role)) >= ROLE_ORDER.index(MIN_ROLE[Action(action)])


def roles_allowed(action: str) -> list[Role]:
    """The roles that may do `action`, weakest first.

    Examples
    --------
    >>> [str(r) for r in roles_allowed("approve")]
    ['reviewer', 'admin']
    """
    return [r for r in ROLE_ORDER if permits(r, action)]


def require(identity: Identity, action: str, role: str | None = None) -> None:
    """Refuse `action` unless `identity` (holding `role`) may do it; the local identity may do everything.

    Parameters
    ----------
    identity : Identity
        Who asks.
    action : str
        An `Action` value.
    role : str, optional
        Their role (a `Role` value); None counts as no role at all.

    Raises
    ------
    PermissionDenied
        When the role is too weak, with a sentence naming who, what and the role it needs.
    """
    if identity.local or permits(role, action):
        return
    need = MIN_ROLE[Action(action)]
    has = f"has the {role} role" if role and role != Role.NONE else "has no role in this workspace"
    raise PermissionDenied(f"{identity.label} {has} and may not {ACTION_WORDS[Action(action)]}: "
                           f"that needs the {need} role" + ("" if need == Role.ADMIN else " or higher") + ".")


def normalise_principal(text: str) -> str:
    """An e-mail address or ``@domain`` as stored: stripped and lower case.

    Raises
    ------
    SegLoopError
        When it is neither.

    Examples
    --------
    >>> normalise_principal(" Ann@Example.ORG "), normalise_principal("@example.org")
    ('ann@example.org', '@example.org')
    """
    value = str(text or "").strip().lower()
    if not (_EMAIL.match(value) or _DOMAIN.match(value)):
        raise SegLoopError(f"{text!r} is neither an e-mail address (ann@example.org) nor a domain (@example.org)")
    return value


@dataclass(frozen=True)
class RolesConfig:
    """Roles from configuration (the roles file and SEGLOOP_ADMIN), before those given in the app.

    Parameters
    ----------
    admins : tuple of str
        E-mail addresses that are always admins.
    roles : dict of str to Role
        E-mail address or ``@domain`` -> role.
    default : Role
        The role of a signed-in person nothing else names.
    source : str
        Where it was read from, for messages ("" when nothing is configured).
    """

    admins: tuple[str, ...] = ()
    roles: dict[str, Role] = field(default_factory=dict)
    default: Role = Role.VIEWER
    source: str = ""


def _role(value: Any, where: str) -> Role:
    if str(value) not in Role.__members__.values():
        raise SegLoopError(f"{where}: unknown role {value!r}; use one of {', '.join(ROLE_ORDER)}")
    return Role(str(value))


def parse_roles(data: Mapping[str, Any], source: str = "", admins_env: str = "") -> RolesConfig:
    """Build a `RolesConfig` from the roles file's content and the SEGLOOP_ADMIN value.

    Parameters
    ----------
    data : mapping
        ``admins`` (list of e-mail addresses), ``default`` (a role) and ``roles`` (principal -> role).
    source : str, optional
        Where `data` came from, for messages.
    admins_env : str, optional
        E-mail addresses separated by commas or spaces.

    Returns
    -------
    RolesConfig

    Raises
    ------
    SegLoopError
        An unknown role, a malformed address or domain, or a domain among the admins.

    Examples
    --------
    >>> cfg = parse_roles({"default": "none", "roles": {"@Example.org": "annotator"}}, admins_env="a@x.org, b@x.org")
    >>> cfg.admins, {k: str(v) for k, v in cfg.roles.items()}, str(cfg.default)
    (('a@x.org', 'b@x.org'), {'@example.org': 'annotator'}, 'none')
    """
    where = source or "roles configuration"
    extra = set(data) - {"admins", "default", "roles"}
    if extra:
        raise SegLoopError(f"{where}: unknown setting(s) {', '.join(sorted(extra))}; use admins, default and [roles]")
    listed = data.get("admins") or []
    if isinstance(listed, str):
        listed = [listed]
    admins = []
    for a in [*listed, *re.split(r"[,\s]+", admins_env or "")]:
        if not str(a).strip():
            continue
        value = normalise_principal(a)
        if value.startswith("@"):
            raise SegLoopError(f"{where}: admins must be e-mail addresses, not a whole domain ({value})")
        if value not in admins:
            admins.append(value)
    roles = data.get("roles") or {}
    if not isinstance(roles, Mapping):
        raise SegLoopError(f"{where}: [roles] must map e-mail addresses or @domains to roles")
    return RolesConfig(tuple(admins), {normalise_principal(k): _role(v, where) for k, v in roles.items()},
                       _role(data.get("default", Role.VIEWER), where), source)


def roles_file(workspace: str | Path | None) -> Path | None:
    """The roles file in use: SEGLOOP_ROLES, else ``<workspace>/roles.toml`` when it exists, else None."""
    value = os.environ.get(ROLES_ENV, "").strip()
    if value:
        return Path(value).expanduser()
    if workspace is not None and (Path(workspace) / ROLES_FILE).is_file():
        return Path(workspace) / ROLES_FILE
    return None


def load_roles_config(workspace: str | Path | None = None) -> RolesConfig:
    """Read the roles configuration: the roles file (see `roles_file`), SEGLOOP_ADMIN and SEGLOOP_DEFAULT_ROLE.

    Read on every call, so a changed file takes effect at once.

    Parameters
    ----------
    workspace : str or pathlib.Path, optional
        The workspace folder, where ``roles.toml`` is looked for.

    Returns
    -------
    RolesConfig
        Empty (no admins, default viewer) when nothing is configured.

    Raises
    ------
    SegLoopError
        When SEGLOOP_ROLES names a missing file, or the file is not valid TOML or not valid roles.
    """
    path = roles_file(workspace)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except OSError as exc:
            raise SegLoopError(f"roles file {path} cannot be read ({exc.strerror or exc})") from exc
        except tomllib.TOMLDecodeError as exc:
            raise SegLoopError(f"roles file {path} is not valid TOML: {exc}") from exc
    default = os.environ.get(DEFAULT_ROLE_ENV, "").strip()
    if default:
        data = {**data, "default": default}
    return parse_roles(data, str(path or "roles configuration"), os.environ.get(ADMIN_ENV, ""))


def role_for(email: str, config: RolesConfig, assigned: Mapping[str, str] | None = None) -> Role:
    """The role of a signed-in e-mail address (the order is in the module docstring).

    Parameters
    ----------
    email : str
        The verified address; empty: the default role.
    config : RolesConfig
        Roles from configuration.
    assigned : mapping of str to str, optional
        Roles given in the app (principal -> role); they win over the roles file, never over the admins.

    Returns
    -------
    Role

    Examples
    --------
    >>> cfg = parse_roles({"roles": {"@x.org": "annotator", "rev@x.org": "reviewer"}}, admins_env="boss@x.org")
    >>> [str(role_for(e, cfg)) for e in ("boss@x.org", "rev@x.org", "ann@x.org", "who@y.org", "")]
    ['admin', 'reviewer', 'annotator', 'viewer', 'viewer']
    >>> str(role_for("ann@x.org", cfg, {"ann@x.org": "reviewer"})), str(role_for("boss@x.org", cfg, {"boss@x.org": "none"}))
    ('reviewer', 'admin')
    """
    email = (email or "").strip().lower()
    if not email:
        return config.default
    if email in config.admins:
        return Role.ADMIN
    assigned = assigned or {}
    domain = "@" + email.rsplit("@", 1)[-1]
    for key in (email, domain):
        if key in assigned:
            return Role(assigned[key])
        if key in config.roles:
            return config.roles[key]
    return config.default


def role_of(store: Datastore, identity: Identity) -> Role:
    """The role `identity` holds in the store's workspace now (configuration and the ``roles`` table, read afresh).

    Parameters
    ----------
    store : Datastore
        The workspace's database.
    identity : Identity
        Who; the local identity is an admin.

    Returns
    -------
    Role

    Raises
    ------
    SegLoopError
        When the roles configuration is broken (see `load_roles_config`).
    """
    if identity.local:
        return Role.ADMIN
    assigned = {a.principal: a.role for a in store.role_assignments()}
    return role_for(identity.email if identity.email_verified else "", load_roles_config(store.workspace), assigned)


def authorize(store: Datastore, identity: Identity | None, action: str) -> str:
    """Refuse `action` unless `identity`'s role allows it now; returns the role to record in the audit trail.

    Parameters
    ----------
    store : Datastore
        The workspace's database.
    identity : Identity or None
        Who asks; None: this process's local identity.
    action : str
        An `Action` value.

    Returns
    -------
    str
        The role (a `Role` value), or "local" for the local identity.

    Raises
    ------
    PermissionDenied
        When the role does not allow it.
    """
    identity = identity or local_identity()
    if identity.local:
        return LOCAL_ROLE
    role = role_of(store, identity)
    require(identity, action, role)
    return str(role)


def acting(identity: Identity | None, author: str = "") -> tuple[Identity, str]:
    """The acting identity and the ``author`` text to record.

    Signed in, the author is the identity (`Identity.label`), whatever text was passed; in local mode
    (`identity` None or local) it is `author` as given, as before sign-in existed.

    Examples
    --------
    >>> who, author = acting(None, "ann"); who.local, who.name, author
    (True, 'ann', 'ann')
    >>> acting(Identity("u-1", "ann@x.org"), "typed text")[1]
    'ann@x.org'
    """
    if identity is None:
        identity = local_identity(author or None)
    return identity, (author if identity.local else identity.label)


def audit(tx: Tx, identity: Identity, actor_role: str, action: str, target: str = "", **detail: Any) -> int:
    """Append an entry for `identity`'s `action` to the audit trail, inside the action's own transaction.

    Parameters
    ----------
    tx : Tx
        The open write transaction of the action.
    identity : Identity
        Who did it.
    actor_role : str
        Their role then (`authorize`'s result).
    action : str
        An `AuditAction` value.
    target : str, optional
        What it was done to, in words.
    **detail
        Ids and values, stored as JSON.

    Returns
    -------
    int
        The entry's row id.
    """
    return tx.append_audit(identity.subject, identity.email, identity.name, actor_role, AuditAction(action), target,
                           detail)


def set_role(store: Datastore, identity: Identity | None, principal: str, role: str) -> RoleAssignment:
    """Give an e-mail address or a domain a role (admins only); recorded in the audit trail.

    Parameters
    ----------
    store : Datastore
        The workspace's database.
    identity : Identity or None
        The admin; None: the local identity.
    principal : str
        ``ann@example.org`` or ``@example.org``.
    role : str
        A `Role` value ("none" locks the address or domain out).

    Returns
    -------
    RoleAssignment
        As stored.

    Raises
    ------
    PermissionDenied
        When `identity` is not an admin.
    SegLoopError
        A malformed principal or unknown role.
    """
    identity = identity or local_identity()
    principal = normalise_principal(principal)
    new = _role(role, "role")
    actor_role = authorize(store, identity, Action.MANAGE_ROLES)
    with store.write() as tx:
        before = {a.principal: a.role for a in tx.role_assignments()}.get(principal)
        tx.set_role_assignment(principal, str(new), identity.subject, identity.email)
        audit(tx, identity, actor_role, AuditAction.ROLE_CHANGE, principal, role=str(new), previous=before)
    return next(a for a in store.role_assignments() if a.principal == principal)


def remove_role(store: Datastore, identity: Identity | None, principal: str) -> bool:
    """Take back the role given in the app to an address or domain (admins only); returns whether there was one.

    The roles file and SEGLOOP_ADMIN then decide again. Recorded in the audit trail when a role was removed.

    Raises
    ------
    PermissionDenied
        When `identity` is not an admin.
    SegLoopError
        A malformed principal.
    """
    identity = identity or local_identity()
    principal = normalise_principal(principal)
    actor_role = authorize(store, identity, Action.MANAGE_ROLES)
    with store.write() as tx:
        before = {a.principal: a.role for a in tx.role_assignments()}.get(principal)
        removed = tx.delete_role_assignment(principal)
        if removed:
            audit(tx, identity, actor_role, AuditAction.ROLE_CHANGE, principal, role=None, previous=before)
    return removed


def audit_trail(store: Datastore, identity: Identity | None = None, limit: int | None = None) -> list[AuditEntry]:
    """The audit trail, oldest first (admins only).

    Parameters
    ----------
    store : Datastore
        The workspace's database.
    identity : Identity, optional
        Who reads it; None: the local identity.
    limit : int, optional
        Only the newest `limit` entries.

    Returns
    -------
    list of AuditEntry

    Raises
    ------
    PermissionDenied
        When `identity` is not an admin.
    """
    authorize(store, identity, Action.READ_AUDIT)
    return store.audit_entries(limit)


def audit_rows(entries: list[AuditEntry]) -> list[dict[str, Any]]:
    """The entries as table rows: id, time (UTC, ISO 8601), who (subject, e-mail, name, role), action, target, detail (JSON).

    Examples
    --------
    >>> e = AuditEntry(1, 0.0, "u-1", "ann@x.org", "Ann", "annotator", "save", "scan 1 (c) v2", {"version": 2})
    >>> audit_rows([e])[0]["time"], audit_rows([e])[0]["detail"]
    ('1970-01-01T00:00:00Z', '{"version": 2}')
    """
    return [{"id": e.id, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(e.created_at)),
             "subject": e.actor_subject, "email": e.actor_email, "name": e.actor_name, "role": e.actor_role,
             "action": e.action, "target": e.target, "detail": json.dumps(e.detail, sort_keys=True)}
            for e in entries]


def audit_csv(entries: list[AuditEntry]) -> str:
    """The entries as CSV text (`audit_rows` columns; a header only when there are none)."""
    rows = audit_rows(entries)
    if not rows:
        return "id,time,subject,email,name,role,action,target,detail\n"
    return csv_text(rows)
