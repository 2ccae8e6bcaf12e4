"""Review loop: label tags on annotation sets, corrected masks, resolved sets with lineage.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("annotation_sets") as batch:
        batch.add_column(
            sa.Column("tag", sa.String(length=16), server_default="original", nullable=False)
        )
        batch.create_check_constraint(
            op.f("ck_annotation_sets_tag"), "tag IN ('original', 'cleansed', 'final')"
        )
    op.create_table(
        "corrections",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("audit_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("max_label", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("author", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["audit_id"], ["audits.id"], name=op.f("fk_corrections_audit_id_audits")
        ),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_corrections_case_id_cases")
        ),
        sa.ForeignKeyConstraint(
            ["file_id"], ["files.id"], name=op.f("fk_corrections_file_id_files")
        ),
        sa.ForeignKeyConstraint(
            ["key_id"], ["api_keys.id"], name=op.f("fk_corrections_key_id_api_keys")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_corrections")),
    )
    op.create_index(
        "ix_corrections_audit_id_case_id", "corrections", ["audit_id", "case_id"], unique=False
    )
    op.create_table(
        "resolutions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("annotation_set_id", sa.Integer(), nullable=False),
        sa.Column("parent_set_id", sa.Integer(), nullable=False),
        sa.Column("audit_id", sa.Integer(), nullable=False),
        sa.Column("policy", sa.String(length=20), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("resolved_by", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "policy IN ('keep_original', 'accept_flagged', 'exclude')",
            name=op.f("ck_resolutions_policy"),
        ),
        sa.ForeignKeyConstraint(
            ["annotation_set_id"],
            ["annotation_sets.id"],
            name=op.f("fk_resolutions_annotation_set_id_annotation_sets"),
        ),
        sa.ForeignKeyConstraint(
            ["parent_set_id"],
            ["annotation_sets.id"],
            name=op.f("fk_resolutions_parent_set_id_annotation_sets"),
        ),
        sa.ForeignKeyConstraint(
            ["audit_id"], ["audits.id"], name=op.f("fk_resolutions_audit_id_audits")
        ),
        sa.ForeignKeyConstraint(
            ["key_id"], ["api_keys.id"], name=op.f("fk_resolutions_key_id_api_keys")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_resolutions")),
        sa.UniqueConstraint("annotation_set_id", name=op.f("uq_resolutions_annotation_set_id")),
    )
    op.create_index(op.f("ix_resolutions_audit_id"), "resolutions", ["audit_id"], unique=False)
    op.create_index(
        op.f("ix_resolutions_parent_set_id"), "resolutions", ["parent_set_id"], unique=False
    )
    op.create_table(
        "resolved_cases",
        sa.Column("resolution_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("mask_id", sa.Integer(), nullable=True),
        sa.Column("review_id", sa.Integer(), nullable=True),
        sa.Column("correction_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "source IN ('original', 'cleansed', 'corrected', 'excluded')",
            name=op.f("ck_resolved_cases_source"),
        ),
        sa.ForeignKeyConstraint(
            ["resolution_id"],
            ["resolutions.id"],
            name=op.f("fk_resolved_cases_resolution_id_resolutions"),
        ),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_resolved_cases_case_id_cases")
        ),
        sa.ForeignKeyConstraint(
            ["mask_id"], ["masks.id"], name=op.f("fk_resolved_cases_mask_id_masks")
        ),
        sa.ForeignKeyConstraint(
            ["review_id"], ["reviews.id"], name=op.f("fk_resolved_cases_review_id_reviews")
        ),
        sa.ForeignKeyConstraint(
            ["correction_id"],
            ["corrections.id"],
            name=op.f("fk_resolved_cases_correction_id_corrections"),
        ),
        sa.PrimaryKeyConstraint("resolution_id", "case_id", name=op.f("pk_resolved_cases")),
    )


def downgrade() -> None:
    op.drop_table("resolved_cases")
    op.drop_index(op.f("ix_resolutions_parent_set_id"), table_name="resolutions")
    op.drop_index(op.f("ix_resolutions_audit_id"), table_name="resolutions")
    op.drop_table("resolutions")
    op.drop_index("ix_corrections_audit_id_case_id", table_name="corrections")
    op.drop_table("corrections")
    with op.batch_alter_table("annotation_sets") as batch:
        batch.drop_constraint(op.f("ck_annotation_sets_tag"), type_="check")
        batch.drop_column("tag")
