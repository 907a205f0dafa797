"""next alert at: the periodic SLA check selects by an index instead of scanning open tickets

Revision ID: 0012
Revises: 0007
Create Date: 2026-11-25 12:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mailer.ledger.db

revision = '0012'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('next_alert_at', mailer.ledger.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f('ix_tickets_next_alert_at'), ['next_alert_at'], unique=False)
    # Every open ticket is looked at once by the next check, which then stores its real next alert.
    op.execute("UPDATE tickets SET next_alert_at = created_at WHERE status <> 'closed'")


def downgrade() -> None:
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_tickets_next_alert_at'))
        batch_op.drop_column('next_alert_at')
