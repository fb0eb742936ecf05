"""Creates in flight: an upstream create is recorded before it is sent, so that after a crash
recovery looks for the prediction it may have started instead of paying for another.

Revision ID: 0004_money
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004_money"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None

# Frozen copies of the column types in imagegen.db.tables at this revision.
_BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "pending_creates",
        sa.Column("id", _BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("generation_id", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=255), nullable=False),
        sa.Column("inputs", _JSON, nullable=False),
        sa.Column("inputs_digest", sa.String(length=64), nullable=False),
        sa.Column("images_requested", sa.Integer(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["generation_id"],
            ["generations.id"],
            name=op.f("fk_pending_creates_generation_id_generations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pending_creates")),
    )
    op.create_index(op.f("ix_pending_creates_generation_id"), "pending_creates", ["generation_id"])


def downgrade() -> None:
    op.drop_table("pending_creates")
