"""The initial schema: projects, keys, files, datasets, cases, masks, audits, results, reviews.

Revision ID: 0001
Revises:
Create Date: 2026-11-27 18:44:05.054625
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "files",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("format", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_files")),
    )
    op.create_index(op.f("ix_files_sha256"), "files", ["sha256"], unique=False)
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        sa.UniqueConstraint("name", name=op.f("uq_projects_name")),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "role IN ('viewer', 'annotator', 'reviewer', 'admin')", name=op.f("ck_api_keys_role")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_api_keys_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_index(op.f("ix_api_keys_project_id"), "api_keys", ["project_id"], unique=False)
    op.create_table(
        "datasets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_datasets_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
        sa.UniqueConstraint("project_id", "name", name=op.f("uq_datasets_project_id_name")),
    )
    op.create_index(op.f("ix_datasets_project_id"), "datasets", ["project_id"], unique=False)
    op.create_table(
        "annotation_sets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_annotation_sets_dataset_id_datasets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_annotation_sets")),
        sa.UniqueConstraint("dataset_id", "name", name=op.f("uq_annotation_sets_dataset_id_name")),
    )
    op.create_index(
        op.f("ix_annotation_sets_dataset_id"), "annotation_sets", ["dataset_id"], unique=False
    )
    op.create_table(
        "cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("image_file_id", sa.Integer(), nullable=False),
        sa.Column("shape", sa.JSON(), nullable=False),
        sa.Column("spacing", sa.JSON(), nullable=False),
        sa.Column("affine", sa.JSON(), nullable=False),
        sa.Column("channels", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_cases_dataset_id_datasets")
        ),
        sa.ForeignKeyConstraint(
            ["image_file_id"], ["files.id"], name=op.f("fk_cases_image_file_id_files")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cases")),
        sa.UniqueConstraint("dataset_id", "name", name=op.f("uq_cases_dataset_id_name")),
    )
    op.create_index(op.f("ix_cases_dataset_id"), "cases", ["dataset_id"], unique=False)
    op.create_table(
        "audits",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("dataset_id", sa.Integer(), nullable=False),
        sa.Column("annotation_set_id", sa.Integer(), nullable=False),
        sa.Column("created_by_key_id", sa.Integer(), nullable=True),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=True),
        sa.Column("epoch", sa.Integer(), nullable=True),
        sa.Column("epochs", sa.Integer(), nullable=True),
        sa.Column("percent", sa.Float(), nullable=True),
        sa.Column("eta_seconds", sa.Float(), nullable=True),
        sa.Column("loss", sa.Float(), nullable=True),
        sa.Column("flagged", sa.Integer(), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("error_code", sa.String(length=64), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_audits_status"),
        ),
        sa.ForeignKeyConstraint(
            ["annotation_set_id"],
            ["annotation_sets.id"],
            name=op.f("fk_audits_annotation_set_id_annotation_sets"),
        ),
        sa.ForeignKeyConstraint(
            ["created_by_key_id"],
            ["api_keys.id"],
            name=op.f("fk_audits_created_by_key_id_api_keys"),
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_audits_dataset_id_datasets")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audits")),
    )
    op.create_index(
        op.f("ix_audits_annotation_set_id"), "audits", ["annotation_set_id"], unique=False
    )
    op.create_index(op.f("ix_audits_dataset_id"), "audits", ["dataset_id"], unique=False)
    op.create_index(op.f("ix_audits_status"), "audits", ["status"], unique=False)
    op.create_table(
        "masks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("annotation_set_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("file_id", sa.Integer(), nullable=False),
        sa.Column("max_label", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["annotation_set_id"],
            ["annotation_sets.id"],
            name=op.f("fk_masks_annotation_set_id_annotation_sets"),
        ),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_masks_case_id_cases")),
        sa.ForeignKeyConstraint(["file_id"], ["files.id"], name=op.f("fk_masks_file_id_files")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_masks")),
        sa.UniqueConstraint(
            "annotation_set_id", "case_id", name=op.f("uq_masks_annotation_set_id_case_id")
        ),
    )
    op.create_index(
        op.f("ix_masks_annotation_set_id"), "masks", ["annotation_set_id"], unique=False
    )
    op.create_index(op.f("ix_masks_case_id"), "masks", ["case_id"], unique=False)
    op.create_table(
        "audit_masks",
        sa.Column("audit_id", sa.Integer(), nullable=False),
        sa.Column("mask_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["audit_id"], ["audits.id"], name=op.f("fk_audit_masks_audit_id_audits")
        ),
        sa.ForeignKeyConstraint(
            ["mask_id"], ["masks.id"], name=op.f("fk_audit_masks_mask_id_masks")
        ),
        sa.PrimaryKeyConstraint("audit_id", "mask_id", name=op.f("pk_audit_masks")),
    )
    op.create_table(
        "case_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("audit_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("noise_score", sa.Float(), nullable=False),
        sa.Column("flagged", sa.Boolean(), nullable=False),
        sa.Column("ce", sa.Float(), nullable=False),
        sa.Column("dice_gap", sa.Float(), nullable=False),
        sa.Column("dice", sa.JSON(), nullable=False),
        sa.Column("changed_fraction", sa.Float(), nullable=False),
        sa.Column("issue_fraction", sa.Float(), nullable=False),
        sa.Column("slices", sa.JSON(), nullable=True),
        sa.Column("cleansed_file_id", sa.Integer(), nullable=True),
        sa.Column("pseudo_label_file_id", sa.Integer(), nullable=True),
        sa.Column("issue_map_file_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["audit_id"], ["audits.id"], name=op.f("fk_case_results_audit_id_audits")
        ),
        sa.ForeignKeyConstraint(
            ["case_id"], ["cases.id"], name=op.f("fk_case_results_case_id_cases")
        ),
        sa.ForeignKeyConstraint(
            ["cleansed_file_id"], ["files.id"], name=op.f("fk_case_results_cleansed_file_id_files")
        ),
        sa.ForeignKeyConstraint(
            ["issue_map_file_id"],
            ["files.id"],
            name=op.f("fk_case_results_issue_map_file_id_files"),
        ),
        sa.ForeignKeyConstraint(
            ["pseudo_label_file_id"],
            ["files.id"],
            name=op.f("fk_case_results_pseudo_label_file_id_files"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_case_results")),
        sa.UniqueConstraint("audit_id", "case_id", name=op.f("uq_case_results_audit_id_case_id")),
    )
    op.create_index(
        "ix_case_results_audit_id_noise_score",
        "case_results",
        ["audit_id", "noise_score"],
        unique=False,
    )
    op.create_index(op.f("ix_case_results_case_id"), "case_results", ["case_id"], unique=False)
    op.create_table(
        "reviews",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("audit_id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("decision", sa.String(length=20), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("reviewer", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "decision IN ('accept_cleansed', 'keep_original', 'needs_rework')",
            name=op.f("ck_reviews_decision"),
        ),
        sa.ForeignKeyConstraint(
            ["audit_id"], ["audits.id"], name=op.f("fk_reviews_audit_id_audits")
        ),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"], name=op.f("fk_reviews_case_id_cases")),
        sa.ForeignKeyConstraint(
            ["key_id"], ["api_keys.id"], name=op.f("fk_reviews_key_id_api_keys")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviews")),
    )
    op.create_index("ix_reviews_audit_id_case_id", "reviews", ["audit_id", "case_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_reviews_audit_id_case_id", table_name="reviews")
    op.drop_table("reviews")
    op.drop_index(op.f("ix_case_results_case_id"), table_name="case_results")
    op.drop_index("ix_case_results_audit_id_noise_score", table_name="case_results")
    op.drop_table("case_results")
    op.drop_table("audit_masks")
    op.drop_index(op.f("ix_masks_case_id"), table_name="masks")
    op.drop_index(op.f("ix_masks_annotation_set_id"), table_name="masks")
    op.drop_table("masks")
    op.drop_index(op.f("ix_audits_status"), table_name="audits")
    op.drop_index(op.f("ix_audits_dataset_id"), table_name="audits")
    op.drop_index(op.f("ix_audits_annotation_set_id"), table_name="audits")
    op.drop_table("audits")
    op.drop_index(op.f("ix_cases_dataset_id"), table_name="cases")
    op.drop_table("cases")
    op.drop_index(op.f("ix_annotation_sets_dataset_id"), table_name="annotation_sets")
    op.drop_table("annotation_sets")
    op.drop_index(op.f("ix_datasets_project_id"), table_name="datasets")
    op.drop_table("datasets")
    op.drop_index(op.f("ix_api_keys_project_id"), table_name="api_keys")
    op.drop_table("api_keys")
    op.drop_table("projects")
    op.drop_index(op.f("ix_files_sha256"), table_name="files")
    op.drop_table("files")
