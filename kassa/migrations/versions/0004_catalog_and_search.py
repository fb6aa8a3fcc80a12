"""catalog and search: categories, the real product model, full-text and typo-tolerant search

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 18:15:11.220338

"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel.sql.sqltypes
from alembic import op
from sqlalchemy.dialects import postgresql

# The categories products already name become root categories; their slug is the old name in
# lower case with dashes ("Home appliances" -> "home-appliances"), which the seeded tree then
# places.
EXISTING_CATEGORIES = """
INSERT INTO categories (slug, parent, name, name_en)
SELECT DISTINCT
    lower(regexp_replace(category, '[^[:alnum:]]+', '-', 'g')), NULL::varchar, category, category
FROM products
ON CONFLICT (slug) DO NOTHING
"""
# As kassa/tables.py had it then: title over brand over description, ё folded to е.
SEARCH_VECTOR = (
    "setweight(to_tsvector('russian'::regconfig, translate(title, 'ёЁ', 'еЕ')), 'A') || "
    "setweight(to_tsvector('russian'::regconfig, translate(brand, 'ёЁ', 'еЕ')), 'B') || "
    "setweight(to_tsvector('russian'::regconfig, translate(description, 'ёЁ', 'еЕ')), 'C')"
)
PRODUCTS_TO_SLUGS = (
    "UPDATE products SET category = lower(regexp_replace(category, '[^[:alnum:]]+', '-', 'g'))"
)

# revision identifiers, used by Alembic.
revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Upgrade schema."""
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_table(
        "categories",
        sa.Column("slug", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("parent", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column("name_en", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent"],
            ["categories.slug"],
        ),
        sa.PrimaryKeyConstraint("slug"),
    )
    op.create_index(op.f("ix_categories_parent"), "categories", ["parent"], unique=False)
    op.create_table(
        "search_words",
        sa.Column("word", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.PrimaryKeyConstraint("word"),
    )
    op.create_index(
        "search_words_trigrams",
        "search_words",
        ["word"],
        unique=False,
        postgresql_using="gin",
        postgresql_ops={"word": "gin_trgm_ops"},
    )
    op.add_column(
        "products",
        sa.Column(
            "description", sqlmodel.sql.sqltypes.AutoString(), server_default="", nullable=False
        ),
    )
    op.add_column(
        "products",
        sa.Column(
            "attributes",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default="{}",
            nullable=False,
        ),
    )
    op.add_column("products", sa.Column("old_price", sa.Integer(), nullable=True))
    op.add_column("products", sa.Column("rating", sa.Double(), server_default="0", nullable=False))
    op.add_column(
        "products", sa.Column("review_count", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column(
        "products", sa.Column("popularity", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column(
        "products",
        sa.Column(
            "images", postgresql.JSONB(astext_type=sa.Text()), server_default="[]", nullable=False
        ),
    )
    op.add_column(
        "products",
        sa.Column(
            "search_vector",
            postgresql.TSVECTOR(),
            sa.Computed(
                SEARCH_VECTOR,
                persisted=True,
            ),
            nullable=True,
        ),
    )
    op.create_index("products_brand", "products", ["brand"], unique=False)
    op.create_index(
        "products_category_popularity",
        "products",
        ["category", sa.literal_column("popularity DESC"), "sku"],
        unique=False,
    )
    op.create_index(
        "products_category_price", "products", ["category", "price", "sku"], unique=False
    )
    op.create_index(
        "products_created_at",
        "products",
        [sa.literal_column("created_at DESC"), "sku"],
        unique=False,
    )
    op.create_index(
        "products_popularity",
        "products",
        [sa.literal_column("popularity DESC"), "sku"],
        unique=False,
    )
    op.create_index("products_price", "products", ["price", "sku"], unique=False)
    op.create_index(
        "products_search", "products", ["search_vector"], unique=False, postgresql_using="gin"
    )
    op.create_check_constraint("products_price_positive", "products", "price > 0")
    op.create_check_constraint(
        "products_old_price_above_price", "products", "old_price IS NULL OR old_price > price"
    )
    op.execute(EXISTING_CATEGORIES)
    op.execute(PRODUCTS_TO_SLUGS)
    op.create_foreign_key(
        "products_category_fkey", "products", "categories", ["category"], ["slug"]
    )


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_constraint("products_category_fkey", "products", type_="foreignkey")
    op.drop_constraint("products_old_price_above_price", "products", type_="check")
    op.drop_constraint("products_price_positive", "products", type_="check")
    op.drop_index("products_search", table_name="products", postgresql_using="gin")
    op.drop_index("products_price", table_name="products")
    op.drop_index("products_popularity", table_name="products")
    op.drop_index("products_created_at", table_name="products")
    op.drop_index("products_category_popularity", table_name="products")
    op.drop_index("products_category_price", table_name="products")
    op.drop_index("products_brand", table_name="products")
    op.drop_column("products", "search_vector")
    op.drop_column("products", "images")
    op.drop_column("products", "popularity")
    op.drop_column("products", "review_count")
    op.drop_column("products", "rating")
    op.drop_column("products", "old_price")
    op.drop_column("products", "attributes")
    op.drop_column("products", "description")
    op.drop_index(
        "search_words_trigrams",
        table_name="search_words",
        postgresql_using="gin",
        postgresql_ops={"word": "gin_trgm_ops"},
    )
    op.drop_table("search_words")
    op.drop_index(op.f("ix_categories_parent"), table_name="categories")
    op.drop_table("categories")
