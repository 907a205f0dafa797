"""spam verdicts and the desk-wide cap on answers to unverified senders

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 12:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('raw_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('verdict', sa.JSON(), nullable=True))
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('unverified', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.create_index('ix_outbox_unverified', ['unverified', 'created_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_unverified')
        batch_op.drop_column('unverified')
    with op.batch_alter_table('raw_messages', schema=None) as batch_op:
        batch_op.drop_column('verdict')
