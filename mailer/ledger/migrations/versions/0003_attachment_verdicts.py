"""attachment verdicts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 07:09:57.374876
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mailer.ledger.db

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.add_column(sa.Column('declared_type', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('refused_reason', sa.String(length=300), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('attachments', schema=None) as batch_op:
        batch_op.drop_column('refused_reason')
        batch_op.drop_column('declared_type')

