"""sla clocks

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23 07:32:44.569678
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mailer.ledger.db

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('settings',
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('value', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('sla_calendar', sa.String(length=64), nullable=False, server_default='default'))
        batch_op.add_column(sa.Column('paused_at', mailer.ledger.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('paused_seconds', sa.Integer(), nullable=False, server_default='0'))



def downgrade() -> None:
    with op.batch_alter_table('tickets', schema=None) as batch_op:
        batch_op.drop_column('paused_seconds')
        batch_op.drop_column('paused_at')
        batch_op.drop_column('sla_calendar')

    op.drop_table('settings')
