"""Comparisons of annotation sets: jobs, the sets they compare, and per-case rows.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')"
CLASS_STATUSES = "status IN ('scored', 'missing_in_a', 'missing_in_b', 'absent')"


def upgrade() -> None:
    op.create_table(
        "comparisons",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("created_by_key_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("cases", sa.Integer(), nullable=False),
        sa.Column("cases_done", sa.Integer(), nullable=False),
        sa.Column("percent", sa.Float(), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.Column("consensus_set_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(STATUSES, name=op.f("ck_comparisons_status")),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_comparisons_dataset_id_datasets")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_key_id"],
            ["api_keys.id"],
            name=op.f("fk_comparisons_created_by_key_id_api_keys"),
        ),
        sa.ForeignKeyConstraint(
            ["consensus_set_id"],
            ["annotation_sets.id"],
            name=op.f("fk_comparisons_consensus_set_id_annotation_sets"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_comparisons")),
    )
    op.create_index(op.f("ix_comparisons_dataset_id"), "comparisons", ["dataset_id"])
    op.create_index(op.f("ix_comparisons_status"), "comparisons", ["status"])
    op.create_table(
        "comparison_sets",
        sa.Column("comparison_id", sa.Integer(), nullable=False),
        sa.Column("annotation_set_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["comparison_id"],
            ["comparisons.id"],
            name=op.f("fk_comparison_sets_comparison_id_comparisons"),
        ),
        sa.ForeignKeyConstraint(
            ["annotation_set_id"],
            ["annotation_sets.id"],
            name=op.f("fk_comparison_sets_annotation_set_id_annotation_sets"),
        ),
        sa.PrimaryKeyConstraint(
            "comparison_id", "annotation_set_id", name=op.f("pk_comparison_sets")
        ),
        sa.UniqueConstraint(
            "comparison_id", "position", name=op.f("uq_comparison_sets_comparison_id_position")
        ),
    )
    op.create_table(
        "comparison_rows",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("comparison_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.Column("set_a_id", sa.Integer(), nullable=False),
        sa.Column("set_b_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("dice", sa.Float(), nullable=True),
        sa.Column("mean_distance_mm", sa.Float(), nullable=True),
        sa.Column("p95_distance_mm", sa.Float(), nullable=True),
        sa.Column("objects_a", sa.Integer(), nullable=False),
        sa.Column("objects_b", sa.Integer(), nullable=False),
        sa.Column("only_in_a", sa.Integer(), nullable=False),
        sa.Column("only_in_b", sa.Integer(), nullable=False),
        sa.Column("disagreement", sa.Float(), nullable=True),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.CheckConstraint(CLASS_STATUSES, name=op.f("ck_comparison_rows_status")),
        sa.ForeignKeyConstraint(
            ["comparison_id"],
            ["comparisons.id"],
            name=op.f("fk_comparison_rows_comparison_id_comparisons"),
        ),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_comparison_rows_case_id_cases")
        ),
        sa.ForeignKeyConstraint(
            ["set_a_id"],
            ["annotation_sets.id"],
            name=op.f("fk_comparison_rows_set_a_id_annotation_sets"),
        ),
        sa.ForeignKeyConstraint(
            ["set_b_id"],
            ["annotation_sets.id"],
            name=op.f("fk_comparison_rows_set_b_id_annotation_sets"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_comparison_rows")),
        sa.UniqueConstraint(
            "comparison_id",
            "case_id",
            "label",
            "set_a_id",
            "set_b_id",
            name=op.f("uq_comparison_rows_comparison_id_case_id_label_set_a_id_set_b_id"),
        ),
    )
    op.create_index(op.f("ix_comparison_rows_case_id"), "comparison_rows", ["case_id"])
    op.create_index(
        "ix_comparison_rows_comparison_id_rank", "comparison_rows", ["comparison_id", "rank"]
    )


def downgrade() -> None:
    op.drop_index("ix_comparison_rows_comparison_id_rank", table_name="comparison_rows")
    op.drop_index(op.f("ix_comparison_rows_case_id"), table_name="comparison_rows")
    op.drop_table("comparison_rows")
    op.drop_table("comparison_sets")
    op.drop_index(op.f("ix_comparisons_status"), table_name="comparisons")
    op.drop_index(op.f("ix_comparisons_dataset_id"), table_name="comparisons")
    op.drop_table("comparisons")
