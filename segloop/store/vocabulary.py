"""The store's words, defined once: where a scan came from, kinds of label version, case statuses, run states,
roles and the actions of the audit trail.

They are `StrEnum`s, so a member equals its string ("correction" == LabelKind.CORRECTION) and is
stored as that plain string in the database (the CHECK constraints of `database.MIGRATIONS` list the
same values; a test keeps them in step).
"""

from __future__ import annotations

from enum import StrEnum


class ScanSource(StrEnum):
    """How a scan entered the workspace (the ``scans.source`` column).

    Members: UPLOADED ("uploaded"), IMPORTED ("imported"), DATADIR ("datadir"); see the comments
    beside each for what it means.
    """

    UPLOADED = "uploaded"  # sent through the browser; copied into the workspace
    IMPORTED = "imported"  # registered by path from a data folder ("Import data folder", CLI)
    DATADIR = "datadir"  # opened from SEGLOOP_DATA_DIR or the demo scans, registered on first use


class LabelKind(StrEnum):
    """What made a label version (the ``label_versions.kind`` column and the file name ``v<NNN>_<kind>.nii.gz``).

    Members: MODEL ("model"), CORRECTION ("correction"), APPROVED ("approved"), REFERENCE ("reference").

    Examples
    --------
    >>> LabelKind.CORRECTION == "correction", str(LabelKind("approved"))
    (True, 'approved')
    """

    MODEL = "model"  # a model's prediction
    CORRECTION = "correction"  # a person's edit
    APPROVED = "approved"  # a reviewer's approval: a byte copy of the approved version
    REFERENCE = "reference"  # ground truth imported with the scan


class CaseStatus(StrEnum):
    """A scan's place in the loop, derived from its newest label version (never stored).

    Members: NEW ("new"), PREDICTED ("predicted"), CORRECTED ("corrected"), APPROVED ("approved");
    `STATUS_BY_KIND` maps a label kind to its status.
    """

    NEW = "new"
    PREDICTED = "predicted"
    CORRECTED = "corrected"
    APPROVED = "approved"


class RunState(StrEnum):
    """A training run's state (the ``training_runs.status`` column).

    Members: QUEUED ("queued"), RUNNING ("running"), FINISHED ("finished"), FAILED ("failed"),
    CANCELLED ("cancelled"); `ACTIVE_RUN_STATES` are the first two.
    """

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


#: Label kinds made or checked by a person: what fine-tuning learns from.
HUMAN_KINDS = (LabelKind.CORRECTION, LabelKind.APPROVED)
#: Run states of a run that has not ended.
ACTIVE_RUN_STATES = (RunState.QUEUED, RunState.RUNNING)

#: Status of a scan by the kind of its newest version ('reference' is human-made, not yet approved here).
STATUS_BY_KIND = {LabelKind.MODEL: CaseStatus.PREDICTED, LabelKind.CORRECTION: CaseStatus.CORRECTED,
                  LabelKind.REFERENCE: CaseStatus.CORRECTED, LabelKind.APPROVED: CaseStatus.APPROVED}


class Role(StrEnum):
    """What a signed-in person may do in a workspace, weakest first (the ``roles.role`` column).

    Members: NONE ("none": no access at all), VIEWER ("viewer": look), ANNOTATOR ("annotator": segment,
    correct, save), REVIEWER ("reviewer": approve), ADMIN ("admin": retrain, activate, roll back, manage
    roles, read the audit trail). Each role may do everything the roles before it may
    (`segloop.store.identity.permits`).

    Examples
    --------
    >>> ROLE_ORDER.index(Role.REVIEWER) > ROLE_ORDER.index(Role.ANNOTATOR)
    True
    """

    NONE = "none"
    VIEWER = "viewer"
    ANNOTATOR = "annotator"
    REVIEWER = "reviewer"
    ADMIN = "admin"


class AuditAction(StrEnum):
    """What an audit trail entry records (the ``audit_log.action`` column).

    Members: SAVE ("save": a label version saved by a person), APPROVE ("approve"), ACTIVATE
    ("activate": a model made the active one), ROLLBACK ("rollback"), TRAIN_START ("train_start"),
    TRAIN_CANCEL ("train_cancel"), ROLE_CHANGE ("role_change": a role given or taken back).
    """

    SAVE = "save"
    APPROVE = "approve"
    ACTIVATE = "activate"
    ROLLBACK = "rollback"
    TRAIN_START = "train_start"
    TRAIN_CANCEL = "train_cancel"
    ROLE_CHANGE = "role_change"


#: The roles, weakest first: each may do what every role before it may.
ROLE_ORDER = (Role.NONE, Role.VIEWER, Role.ANNOTATOR, Role.REVIEWER, Role.ADMIN)
