"""Classes declared on (or inferred for) each annotation set.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06 02:30:00

Sets that already hold masks get ``class_<v>`` for 1..their largest mask value (the masks'
values were not kept, only their largest), marked as inferred.
"""

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE (SQLite 3.35+ adds and drops columns in place): a batch would copy the table,
# and SQLite refuses to drop the old copy while masks and audits refer to its rows.


def upgrade() -> None:
    op.add_column(
        "annotation_sets", sa.Column("classes", sa.JSON(), server_default="{}", nullable=False)
    )
    op.add_column(
        "annotation_sets",
        sa.Column("classes_declared", sa.Boolean(), server_default=sa.false(), nullable=False),
    )
    bind = op.get_bind()
    largest = bind.execute(
        sa.text("SELECT annotation_set_id, MAX(max_label) FROM masks GROUP BY annotation_set_id")
    ).all()
    for set_id, top in largest:
        classes = {f"class_{v}": v for v in range(1, int(top or 0) + 1)}
        bind.execute(
            sa.text("UPDATE annotation_sets SET classes = :classes WHERE id = :id"),
            {"classes": json.dumps(classes), "id": set_id},
        )


def downgrade() -> None:
    op.drop_column("annotation_sets", "classes_declared")
    op.drop_column("annotation_sets", "classes")
