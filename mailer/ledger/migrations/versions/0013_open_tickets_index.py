"""open tickets index: status and queue, for scrape-time gauges and `supportd status`

Revision ID: 0013
Revises: 0006
Create Date: 2026-11-25 12:30:00.000000
"""

from __future__ import annotations

from alembic import op

revision = '0013'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.create_index('ix_ticket_status_queue', ['status', 'queue'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_index('ix_ticket_status_queue')
