"""reservation claims: a hold taken by the gateway before its order exists

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 22:40:00

"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # NULL while the gateway's claim waits for the order it is taken for (activities/placement.py).
    op.alter_column("reservations", "order_id", nullable=True)


def downgrade() -> None:
    op.execute(
        "DELETE FROM reservation_lines"
        " WHERE reservation_id IN (SELECT id FROM reservations WHERE order_id IS NULL)"
    )
    op.execute("DELETE FROM reservations WHERE order_id IS NULL")
    op.alter_column("reservations", "order_id", nullable=False)
