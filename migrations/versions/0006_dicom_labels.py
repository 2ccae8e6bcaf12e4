"""DICOM cases: a pseudonymous name, with the patient-facing labels kept beside it.

Cases uploaded before this revision were named ``<PatientID>_s<SeriesNumber>``. Each is renamed
to its pseudonym (``imaging.dicom.labels``, the name the engine now gives its series, so that
audits of old datasets still pair the engine's cases with the rows), its labels are read from
its stored series, and its image, mask and result files are renamed with it. A case whose
stored series is missing keeps its name, with a warning.

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-06 02:30:00
"""

import io
import logging
import zipfile
from collections.abc import Sequence

import pydicom
import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

log = logging.getLogger("segaudit.migrate")
SERIES_FORMAT = "dicom-series"  # app.services.dicom.SERIES_FORMAT when this was written


def upgrade() -> None:
    with op.batch_alter_table("cases") as batch:
        batch.add_column(sa.Column("dicom_labels", sa.JSON(), nullable=True))
    pseudonymise(op.get_bind())


def downgrade() -> None:
    # The pseudonyms stay: the old names held the patient's ID, and a downgrade brings no
    # code that reads them back.
    with op.batch_alter_table("cases") as batch:
        batch.drop_column("dicom_labels")


CASES = sa.table(
    "cases",
    sa.column("id", sa.Integer),
    sa.column("name", sa.String),
    sa.column("image_file_id", sa.Integer),
    sa.column("dicom_labels", sa.JSON),
)
FILES = sa.table(
    "files",
    sa.column("id", sa.Integer),
    sa.column("name", sa.String),
    sa.column("sha256", sa.String),
    sa.column("format", sa.String),
)
MASKS = sa.table("masks", sa.column("case_id", sa.Integer), sa.column("file_id", sa.Integer))
RESULT_FILES = ("cleansed_file_id", "pseudo_label_file_id", "issue_map_file_id")
RESULTS = sa.table(
    "case_results",
    sa.column("case_id", sa.Integer),
    *(sa.column(c, sa.Integer) for c in RESULT_FILES),
)


def pseudonymise(connection: sa.Connection) -> int:
    """Rename every DICOM case that has no labels yet by its pseudonym; return how many were."""
    rows = connection.execute(
        sa.select(CASES.c.id, CASES.c.name, FILES.c.sha256)
        .join(FILES, FILES.c.id == CASES.c.image_file_id)
        .where(FILES.c.format == SERIES_FORMAT, CASES.c.dicom_labels.is_(None))
    ).all()
    if not rows:
        return 0
    from app.settings import get_settings  # only where there is something to rename
    from app.storage import Store
    from imaging.dicom.labels import labels_of, pseudonym

    store = Store(get_settings().storage)
    renamed = 0
    for case_id, old, sha in rows:
        path = store.path(sha)
        if not path.is_file():
            log.warning("case %s: its stored series is missing; its name is kept", case_id)
            continue
        with zipfile.ZipFile(path) as zf:
            first = zf.read(zf.namelist()[0])
        header = pydicom.dcmread(io.BytesIO(first), stop_before_pixels=True)
        new = pseudonym(str(header.StudyInstanceUID), str(header.SeriesInstanceUID))
        connection.execute(
            CASES.update()
            .where(CASES.c.id == case_id)
            .values(name=new, dicom_labels=labels_of(header))
        )
        _rename_files(connection, case_id, old, new)
        renamed += 1
    log.info("named %d DICOM cases by their pseudonyms", renamed)
    return renamed


def _rename_files(connection: sa.Connection, case_id: int, old: str, new: str) -> None:
    """The case's image, mask and result files named ``<old>.<ext>`` become ``<new>.<ext>``."""
    ids = {
        *connection.scalars(sa.select(CASES.c.image_file_id).where(CASES.c.id == case_id)),
        *connection.scalars(sa.select(MASKS.c.file_id).where(MASKS.c.case_id == case_id)),
    }
    for column in RESULT_FILES:
        found = connection.scalars(sa.select(RESULTS.c[column]).where(RESULTS.c.case_id == case_id))
        ids.update(i for i in found if i is not None)
    named = connection.execute(sa.select(FILES.c.id, FILES.c.name).where(FILES.c.id.in_(ids))).all()
    for file_id, name in named:
        if name.startswith(f"{old}."):
            connection.execute(
                FILES.update().where(FILES.c.id == file_id).values(name=new + name[len(old) :])
            )
