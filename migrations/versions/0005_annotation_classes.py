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


def upgrade() -> None:
    with op.batch_alter_table("annotation_sets") as batch:
        batch.add_column(sa.Column("classes", sa.JSON(), server_default="{}", nullable=False))
        batch.add_column(
            sa.Column("classes_declared", sa.Boolean(), server_default=sa.false(), nullable=False)
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
    with op.batch_alter_table("annotation_sets") as batch:
        batch.drop_column("classes_declared")
        batch.drop_column("classes")
