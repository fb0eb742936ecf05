"""The input images of each generation (edits, image-to-image, inpainting), by stored key.

Revision ID: 0006_input_images
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006_input_images"
down_revision: str | None = "0005_keys_usage"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "input_images",
        sa.Column("generation_id", sa.String(length=64), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("content_type", sa.String(length=100), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("source_url", sa.Text(), nullable=True),
        sa.CheckConstraint("role IN ('image', 'mask')", name=op.f("ck_input_images_role")),
        sa.ForeignKeyConstraint(
            ["generation_id"],
            ["generations.id"],
            name=op.f("fk_input_images_generation_id_generations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("generation_id", "position", name=op.f("pk_input_images")),
    )
    op.create_index(op.f("ix_input_images_key"), "input_images", ["key"])


def downgrade() -> None:
    op.drop_table("input_images")
