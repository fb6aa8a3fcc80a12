"""claim keys: a tap sent again finds the stock its first try claimed

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 01:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The tap's key (its checkout's workflow id) on a claim the gateway took: one held per key.
    op.add_column("reservations", sa.Column("claim_key", sa.String(length=200), nullable=True))
    op.create_index(
        "reservations_one_held_claim_per_key",
        "reservations",
        ["claim_key"],
        unique=True,
        postgresql_where=sa.text("status = 'held'"),
    )


def downgrade() -> None:
    op.drop_index("reservations_one_held_claim_per_key", table_name="reservations")
    op.drop_column("reservations", "claim_key")
