"""An index for each sort of an audit's case listing (rank, dice_gap, changed_fraction; the
noise_score one exists since 0001).

Revision ID: 0007
Revises: 0004
Create Date: 2026-12-06 02:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ("rank", "dice_gap", "changed_fraction")


def upgrade() -> None:
    for column in COLUMNS:
        op.create_index(f"ix_case_results_audit_id_{column}", "case_results", ["audit_id", column])


def downgrade() -> None:
    for column in reversed(COLUMNS):
        op.drop_index(f"ix_case_results_audit_id_{column}", table_name="case_results")
