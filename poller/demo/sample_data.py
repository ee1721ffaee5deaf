"""Sample source tables shaped like a real retailer's CRM, deterministic seed data for several
tenants, and the poller configuration that maps them onto the canonical schemas.

The tables keep the source system's own names (`cheques`, `goods`, `f_name`, `post_index`...)
on purpose: the demo shows the configuration doing the renaming, as it must for real customers.
Ids are global across tenants (one integer primary key per table, like the shared CRM database
this imitates), so tenant isolation rests on the `user_id` column alone.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import unicodedata
from collections.abc import Callable, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect, make_url

from poller.demo import vocab

DEFAULT_TENANTS: tuple[str, ...] = ("acme-corp", "globex")
PASSWORD_ENV = "POLLER_DEMO_DB_PASSWORD"
INSERT_CHUNK = 2_000
CENT, MILLI = Decimal("0.01"), Decimal("0.001")

# Seeded timestamps all lie in this past window: with settle_delay_s 0 the reader still bounds
# time-mode batches by the database's "now", so a future timestamp would never be read.
T0, T1 = dt.datetime(2024, 1, 1), dt.datetime(2025, 6, 30)


class ExactDecimal(sa.types.TypeDecorator[Decimal]):
    """DECIMAL(p, s); TEXT on SQLite, which has no exact decimal type (its NUMERIC affinity
    would turn 19.90 into the float 19.9). The text is `format(Decimal, 'f')`, never a float."""

    impl = sa.Numeric
    cache_ok = True

    def __init__(self, precision: int, scale: int) -> None:
        super().__init__(precision, scale, asdecimal=True)

    def load_dialect_impl(self, dialect: Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String(40))
        return dialect.type_descriptor(self.impl_instance)

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is not None and dialect.name == "sqlite":
            return format(value, "f")
        return value


def _money() -> ExactDecimal:
    return ExactDecimal(18, 2)


# Microsecond precision on MariaDB/MySQL too (plain DATETIME there drops the fraction).
_TS = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")

metadata = sa.MetaData()


def _table(name: str, pk: str, *columns: sa.Column[Any]) -> sa.Table:
    """A CRM table: global integer id, tenant column, updated_at maintained by the app."""
    return sa.Table(
        name, metadata,
        sa.Column(pk, sa.Integer, primary_key=True, autoincrement=False,
                  info={"field": "local_id"}),
        sa.Column("user_id", sa.String(64), nullable=False),
        *columns,
        sa.Column("updated_at", _TS, nullable=False, info={"field": "updated_at"}),
        # The poller's queries filter on the tenant and order by the cursor.
        sa.Index(f"ix_{name}_tenant_updated", "user_id", "updated_at"),
        mysql_charset="utf8mb4",
    )  # fmt: skip


def _col(name: str, type_: Any, field: str, nullable: bool = True) -> sa.Column[Any]:
    """A source column and the canonical field it feeds (the demo config's mapping)."""
    return sa.Column(name, type_, nullable=nullable, info={"field": field})


_S = sa.String
customers = _table(
    "customers", "customer_id",
    _col("f_name", _S(100), "first_name", False), _col("m_name", _S(100), "middle_name"),
    _col("l_name", _S(100), "last_name", False), _col("email", _S(200), "email"),
    _col("phone", _S(40), "phone"), _col("gender", _S(1), "sex"),
    _col("b_date", sa.Date, "birth_date"), _col("country", _S(60), "country"),
    _col("area", _S(100), "area"), _col("city", _S(100), "city"),
    _col("post_index", _S(20), "zip"), _col("reg_date", _TS, "register_date"),
)  # fmt: skip
cheques = _table(
    "cheques", "cheque_id",
    _col("customer_id", sa.Integer, "customer_id"), _col("shop_code", _S(20), "store_id"),
    _col("cheque_no", _S(40), "receipt_number"), _col("cheque_dt", _TS, "purchased_at", False),
    _col("total_sum", _money(), "total_amount", False),
    _col("discount_sum", _money(), "discount_amount"),
    _col("bonus_add", _money(), "bonus_accrued"), _col("bonus_spent", _money(), "bonus_redeemed"),
    _col("currency_code", _S(3), "currency"), _col("op_type", _S(10), "operation_type"),
    _col("state", _S(10), "status"),
)  # fmt: skip
cheque_items = _table(
    "cheque_items", "item_id",
    _col("cheque_id", sa.Integer, "receipt_id", False), _col("pos_no", sa.Integer, "line_number"),
    _col("goods_id", sa.Integer, "product_id"),
    _col("qty", ExactDecimal(18, 3), "quantity", False), _col("unit_price", _money(), "price"),
    _col("line_sum", _money(), "amount", False),
    _col("line_discount", _money(), "discount_amount"),
)  # fmt: skip
crm_events = _table(
    "crm_events", "event_id",
    _col("customer_id", sa.Integer, "customer_id"), _col("ev_type", _S(40), "event_type", False),
    _col("ev_time", _TS, "occurred_at", False), _col("channel", _S(20), "channel"),
    _col("ev_comment", _S(500), "description"), _col("ev_data", sa.Text, "payload"),
)  # fmt: skip
goods = _table(
    "goods", "goods_id",
    _col("goods_name", _S(200), "name", False), _col("article", _S(40), "sku"),
    _col("ean13", _S(13), "barcode"), _col("group_id", sa.Integer, "category_id"),
    _col("brand_name", _S(100), "brand"), _col("measure", _S(10), "unit"),
    _col("retail_price", _money(), "price"), _col("active", sa.Boolean, "is_active"),
)  # fmt: skip
goods_groups = _table(
    "goods_groups", "group_id",
    _col("group_name", _S(200), "name", False), _col("parent_group_id", sa.Integer, "parent_id"),
    _col("depth", sa.Integer, "level"), _col("full_path", _S(500), "path"),
)  # fmt: skip
bonus_accounts = _table(
    "bonus_accounts", "account_id",
    _col("customer_id", sa.Integer, "customer_id", False),
    _col("bonus_sum", _money(), "balance", False), _col("bonus_pending", _money(), "pending"),
    _col("burn_date", _TS, "expires_at"), _col("currency_code", _S(3), "currency"),
)  # fmt: skip
coupons = _table(
    "coupons", "coupon_id",
    _col("coupon_code", _S(40), "code", False), _col("campaign_name", _S(200), "campaign"),
    _col("discount_pct", ExactDecimal(9, 4), "discount_percent"),
    _col("discount_sum", _money(), "discount_amount"), _col("valid_from", _TS, "valid_from"),
    _col("valid_to", _TS, "valid_until"), _col("customer_id", sa.Integer, "customer_id"),
    _col("used", sa.Boolean, "is_used"), _col("used_at", _TS, "used_at"),
)  # fmt: skip

# canonical entity -> (source table, batching mode): a mix of the three modes. The cursor of
# `id` mode, the key and the timestamp+id tie-breaker are the table's primary key.
ENTITY_SOURCES: dict[str, tuple[sa.Table, str]] = {
    "customers": (customers, "id"), "receipts": (cheques, "timestamp"),
    "receipt_lines": (cheque_items, "timestamp+id"), "events": (crm_events, "id"),
    "products": (goods, "timestamp+id"), "product_categories": (goods_groups, "id"),
    "bonus_balances": (bonus_accounts, "timestamp"), "promo_codes": (coupons, "timestamp+id"),
}  # fmt: skip
ENTITY_TABLES: dict[str, str] = {e: str(t.name) for e, (t, _mode) in ENTITY_SOURCES.items()}
# rows per tenant at scale 1 (the category tree is a fixed size)
BASE_COUNTS: dict[str, int] = {
    "customers": 300, "cheques": 800, "cheque_items": 2_000, "crm_events": 600, "goods": 150,
    "bonus_accounts": 300, "coupons": 100,
}  # fmt: skip


def _ts(rng: random.Random, start: dt.datetime = T0, end: dt.datetime = T1) -> dt.datetime:
    """A timestamp in [start, end); half of them carry microseconds, like app-written rows."""
    seconds = rng.randrange(max(1, int((end - start).total_seconds())))
    micros = rng.randrange(1_000_000) if rng.random() < 0.5 else 0
    return start + dt.timedelta(seconds=seconds, microseconds=micros)


def _money_between(rng: random.Random, lo: int, hi: int) -> Decimal:
    # scaleb keeps the exponent: 12.30, not 12.3 (which a division would give)
    return Decimal(rng.randrange(lo * 100, hi * 100)).scaleb(-2)


def _ean13(rng: random.Random) -> str:
    digits = [4, 6, 0] + [rng.randrange(10) for _ in range(9)]
    check = (10 - sum(d * (3 if i % 2 else 1) for i, d in enumerate(digits)) % 10) % 10
    return "".join(map(str, digits)) + str(check)


def _ascii(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()


def _share_timestamp(rng: random.Random, rows: list[dict[str, Any]], fraction: float) -> None:
    """Give a sample of rows one common updated_at (a bulk UPDATE). The median is chosen so the
    run sits mid-table, where it straddles a batch boundary as often as possible."""
    if len(rows) < 4:
        return
    median = sorted(r["updated_at"] for r in rows)[len(rows) // 2]
    for row in rng.sample(rows, max(2, int(len(rows) * fraction))):
        row["updated_at"] = median


def _id_ranges() -> Callable[[str, int], range]:
    """Global id counters: ids stay unique across tenants, as in one shared CRM database."""
    next_id: dict[str, int] = {}

    def take(table: str, n: int) -> range:
        first = next_id[table] = next_id.get(table, 1)
        next_id[table] += n
        return range(first, first + n)

    return take


def _customer(rng: random.Random, cid: int, tenant: str) -> dict[str, Any]:
    kind = rng.random()
    middle: str | None = None
    if kind < 0.6:  # Russian: patronymic present most of the time
        gender = rng.choice("MF")
        first = rng.choice(vocab.RU_M if gender == "M" else vocab.RU_F)
        last = rng.choice(vocab.RU_LAST) + ("" if gender == "M" else "а")  # noqa: RUF001 (Cyrillic)
        if rng.random() < 0.8:
            middle = rng.choice(vocab.RU_PATR) + ("ич" if gender == "M" else "на")
        area, city, zip_code = rng.choice(vocab.RU_PLACES)
        country, email_name = "Россия", f"client{cid}"
        phone = f"+7 9{rng.randrange(10, 99)} {rng.randrange(100, 999)}-{rng.randrange(10, 99)}-" \
                f"{rng.randrange(10, 99)}"  # fmt: skip
    else:
        first, last, gender, country, area, city, zip_code = rng.choice(
            vocab.LATIN if kind < 0.88 else vocab.CJK
        )
        if first in ("José", "Chloé") and rng.random() < 0.5:
            middle = "María" if first == "José" else "Anaïs"
        local = ".".join(p for p in (_ascii(first), _ascii(last)) if p)
        email_name = f"{local}{cid}" if local else f"client{cid}"
        phone = f"+{vocab.PHONE_CODES[country]} {rng.randrange(100_000_000, 999_999_999)}"
    reg = _ts(rng, dt.datetime(2019, 1, 1), T0)
    return {
        "customer_id": cid, "user_id": tenant, "f_name": first, "m_name": middle,
        "l_name": last, "email": None if rng.random() < 0.1 else f"{email_name}@example.com",
        "phone": None if rng.random() < 0.15 else phone,
        "gender": None if rng.random() < 0.05 else gender,
        "b_date": None if rng.random() < 0.1 else dt.date(1950, 1, 1)
        + dt.timedelta(days=rng.randrange(20_000)),
        "country": country, "area": area, "city": city, "post_index": zip_code,
        "reg_date": reg, "updated_at": _ts(rng),
    }  # fmt: skip


def _tenant_rows(
    rng: random.Random,
    tenant: str,
    currency: str,
    counts: dict[str, int],
    take: Callable[[str, int], range],
) -> dict[str, list[dict[str, Any]]]:
    rows: dict[str, list[dict[str, Any]]] = {}
    customer_ids = list(take("customers", counts["customers"]))
    rows["customers"] = [_customer(rng, cid, tenant) for cid in customer_ids]

    group_ids = list(take("goods_groups", len(vocab.CATEGORIES)))
    paths: list[str] = []
    depths: list[int] = []
    rows["goods_groups"] = []
    for gid, (name, parent) in zip(group_ids, vocab.CATEGORIES, strict=True):
        paths.append(name if parent is None else f"{paths[parent]} / {name}")
        depths.append(1 if parent is None else depths[parent] + 1)
        rows["goods_groups"].append({
            "group_id": gid, "user_id": tenant, "group_name": name,
            "parent_group_id": None if parent is None else group_ids[parent],
            "depth": depths[-1], "full_path": paths[-1], "updated_at": _ts(rng),
        })  # fmt: skip

    rows["goods"] = []
    for n, gid in enumerate(take("goods", counts["goods"])):
        name, unit, price = vocab.PRODUCTS[n % len(vocab.PRODUCTS)]
        brand = vocab.BRANDS[(n // len(vocab.PRODUCTS)) % len(vocab.BRANDS)]
        rows["goods"].append({
            "goods_id": gid, "user_id": tenant, "goods_name": f"{name} — {brand}",
            "article": f"SKU-{gid:06d}", "ean13": None if rng.random() < 0.1 else _ean13(rng),
            "group_id": group_ids[vocab.LEAF_FOR_PRODUCT[n % len(vocab.PRODUCTS)]],
            "brand_name": brand,
            "measure": unit, "retail_price": Decimal(price) + Decimal(n // len(vocab.PRODUCTS)),
            "active": rng.random() < 0.9, "updated_at": _ts(rng),
        })  # fmt: skip

    rows["cheques"], rows["cheque_items"] = [], []
    cheque_ids = list(take("cheques", counts["cheques"]))
    # Every cheque has at least one line; the rest are spread at random.
    owner = cheque_ids + [rng.choice(cheque_ids) for _ in range(counts["cheques_extra"])]
    owner.sort()
    item_ids = iter(take("cheque_items", len(owner)))
    by_cheque: dict[int, list[dict[str, Any]]] = {c: [] for c in cheque_ids}
    for cheque_id in owner:
        product = rng.choice(rows["goods"])
        weighed = product["measure"] == "kg"
        qty = Decimal(rng.randrange(100, 2500)) * MILLI if weighed else Decimal(rng.randint(1, 5))
        qty = qty.quantize(MILLI)
        gross = (qty * product["retail_price"]).quantize(CENT, ROUND_HALF_UP)
        discount = (gross * Decimal("0.05")).quantize(CENT, ROUND_HALF_UP)
        line = by_cheque[cheque_id]
        line.append({
            "item_id": next(item_ids), "user_id": tenant, "cheque_id": cheque_id,
            "pos_no": len(line) + 1, "goods_id": product["goods_id"], "qty": qty,
            "unit_price": product["retail_price"], "line_sum": gross - discount,
            "line_discount": discount if discount else None,
        })  # fmt: skip
    for cheque_id in cheque_ids:
        sold_at = _ts(rng)
        lines = by_cheque[cheque_id]
        for item in lines:
            item["updated_at"] = sold_at + dt.timedelta(milliseconds=rng.randrange(1, 900))
        total = sum((i["line_sum"] for i in lines), Decimal("0.00"))
        customer = rng.choice(customer_ids) if rng.random() < 0.85 else None
        spent = min(total, _money_between(rng, 0, 300)) if customer and rng.random() < 0.2 else None
        rows["cheques"].append({
            "cheque_id": cheque_id, "user_id": tenant, "customer_id": customer,
            "shop_code": f"S{rng.randrange(1, 25):03d}", "cheque_no": f"{cheque_id:08d}",
            "cheque_dt": sold_at, "total_sum": total,
            "discount_sum": sum((i["line_discount"] or Decimal(0) for i in lines), Decimal("0.00")),
            "bonus_add": (total * Decimal("0.05")).quantize(CENT) if customer else None,
            "bonus_spent": spent, "currency_code": currency,
            "op_type": "return" if rng.random() < 0.05 else "sale",
            "state": "cancelled" if rng.random() < 0.02 else "closed",
            "updated_at": sold_at + dt.timedelta(seconds=rng.randrange(1, 120)),
        })  # fmt: skip
        rows["cheque_items"].extend(lines)

    rows["crm_events"] = []
    for eid in take("crm_events", counts["crm_events"]):
        at = _ts(rng)
        payload = None
        if rng.random() < 0.7:
            device = rng.choice(("iOS", "Android", "web", "POS"))
            note = {"device": device, "note": rng.choice(vocab.PAYLOAD_NOTES)}
            payload = json.dumps(note, ensure_ascii=False)
        rows["crm_events"].append({
            "event_id": eid, "user_id": tenant,
            "customer_id": rng.choice(customer_ids) if rng.random() < 0.9 else None,
            "ev_type": rng.choice(vocab.EVENTS), "ev_time": at,
            "channel": rng.choice(("app", "web", "pos", "email", None)),
            "ev_comment": rng.choice(vocab.COMMENTS), "ev_data": payload, "updated_at": at,
        })  # fmt: skip

    accounts = take("bonus_accounts", counts["bonus_accounts"])
    rows["bonus_accounts"] = [{
        "account_id": aid, "user_id": tenant, "customer_id": customer_ids[n % len(customer_ids)],
        "bonus_sum": _money_between(rng, 0, 5000),
        "bonus_pending": _money_between(rng, 1, 200) if rng.random() < 0.3 else None,
        "burn_date": _ts(rng, T1, T1 + dt.timedelta(days=365)) if rng.random() < 0.6 else None,
        "currency_code": currency, "updated_at": _ts(rng),
    } for n, aid in enumerate(accounts)]  # fmt: skip

    rows["coupons"] = []
    for cid in take("coupons", counts["coupons"]):
        start = _ts(rng)
        used = rng.random() < 0.3
        pct = Decimal(rng.randrange(50_000, 300_000)).scaleb(-4) if rng.random() < 0.6 else None
        rows["coupons"].append({
            "coupon_id": cid, "user_id": tenant,
            "coupon_code": f"{tenant[:3].upper()}-{rng.randrange(16**6):06X}-{cid}",
            "campaign_name": rng.choice(vocab.CAMPAIGNS), "discount_pct": pct,
            "discount_sum": None if pct is not None else _money_between(rng, 50, 1000),
            "valid_from": start, "valid_to": start + dt.timedelta(days=rng.choice((7, 30, 90))),
            "customer_id": rng.choice(customer_ids) if rng.random() < 0.5 else None,
            "used": used, "used_at": start + dt.timedelta(hours=rng.randrange(1, 150))
            if used else None, "updated_at": start,
        })  # fmt: skip

    for table, fraction in (("cheques", 0.05), ("cheque_items", 0.08), ("goods", 0.1),
                            ("bonus_accounts", 0.1), ("coupons", 0.1)):  # fmt: skip
        _share_timestamp(rng, rows[table], fraction)
    return rows


def _counts(tenant_index: int, scale: int) -> dict[str, int]:
    # Later tenants get somewhat fewer rows, so a leak between tenants also shows in the counts.
    factor = 4 / (4 + tenant_index)
    counts = {t: max(1, int(n * scale * factor)) for t, n in BASE_COUNTS.items()}
    counts["cheque_items"] = max(counts["cheque_items"], counts["cheques"])
    counts["cheques_extra"] = counts.pop("cheque_items") - counts["cheques"]
    return counts


def create_and_seed(
    engine: sa.Engine, tenants: Sequence[str] = DEFAULT_TENANTS, scale: int = 1, seed: int = 42
) -> dict[tuple[str, str], int]:
    """Drop and recreate the sample tables, fill them for every tenant, return the row count
    per (tenant, source table). The same arguments always produce the same rows."""
    if scale < 1:
        raise ValueError("scale must be >= 1")
    take = _id_ranges()
    result: dict[tuple[str, str], int] = {}
    metadata.drop_all(engine)
    metadata.create_all(engine)
    with engine.begin() as conn:
        for index, tenant in enumerate(tenants):
            # A string seed is hashed deterministically (unlike hash() of a str).
            rng = random.Random(f"{seed}:{tenant}")
            currency = ("RUB", "EUR", "USD")[index % 3]
            rows = _tenant_rows(rng, tenant, currency, _counts(index, scale), take)
            for table in metadata.sorted_tables:
                data = rows[table.name]
                for i in range(0, len(data), INSERT_CHUNK):  # executemany, bounded memory
                    conn.execute(table.insert(), data[i : i + INSERT_CHUNK])
                result[(tenant, table.name)] = len(data)
    return result


# --- configuration --------------------------------------------------------------------------


def url_secret(url: str) -> tuple[str, dict[str, str]]:
    """The URL with its password replaced by `${POLLER_DEMO_DB_PASSWORD}`, and the environment
    that placeholder needs. The value is the password exactly as escaped in the URL, because
    the config loader substitutes it into the URL text before parsing it."""
    parsed = make_url(url)
    if parsed.password is None:
        return url, {}
    marker = "PollerPasswordMarker"  # alphanumeric: rendered without escaping
    real = parsed.render_as_string(hide_password=False)
    before, after = parsed.set(password=marker).render_as_string(hide_password=False).split(marker)
    escaped = real[len(before) : len(real) - len(after)]
    return f"{before}${{{PASSWORD_ENV}}}{after}", {PASSWORD_ENV: escaped}


def full_name_sql(dialect: str) -> str:
    """First, middle and last name joined by single spaces, skipping a NULL middle name."""
    if dialect == "sqlite":
        return "f_name || ' ' || COALESCE(m_name || ' ', '') || l_name"
    return "CONCAT_WS(' ', f_name, m_name, l_name)"


def _entity(table: sa.Table, mode: str, extra: dict[str, str]) -> dict[str, Any]:
    # str(): SQLAlchemy's quoted_name is a str subclass that yaml.safe_dump refuses.
    key = str(next(iter(table.primary_key.columns)).name)
    batching = {"mode": mode, "column": key if mode == "id" else "updated_at"}
    if mode == "timestamp+id":
        batching["id_column"] = key
    fields = {c.info["field"]: str(c.name) for c in table.columns if "field" in c.info}
    return {"table": str(table.name), "key": key, "fields": {**fields, **extra},
            "batching": batching, "batch_size": 1000, "poll_interval_s": 5,
            "settle_delay_s": 0}  # fmt: skip


def demo_config(
    url: str, tenant: str, bootstrap: str, topic_prefix: str, registry_url: str | None = None
) -> dict[str, Any]:
    """The poller configuration for the sample tables. The URL's password (if any) is replaced
    by a placeholder: see `url_secret` for the variable to set. With a schema registry the
    topics are in the Confluent format, else in single-object encoding."""
    safe_url, _env = url_secret(url)
    # An SQL expression mapping, as in the original system's CONCAT(f_name," ",m_name,...).
    extra = {"customers": {"full_name": full_name_sql(make_url(url).get_backend_name())}}
    return {
        "tenant": tenant,
        "source": {"url": safe_url, "tenant_column": "user_id", "timezone": "UTC"},
        "kafka": {
            "bootstrap_servers": bootstrap,
            "topic_prefix": topic_prefix,
            # Own transactional id per run: never fences another poller of this tenant.
            "transactional_id_prefix": topic_prefix,
            "format": "single_object" if registry_url is None else "confluent",
        },
        **({} if registry_url is None else {"schema_registry": {"url": registry_url}}),
        "metrics": {"enabled": False},
        # A demo should fail within seconds, not retry an absent database for ever.
        "retry": {"max_attempts": 5, "max_backoff_s": 5},
        "entities": {
            name: _entity(table, mode, extra.get(name, {}))
            for name, (table, mode) in ENTITY_SOURCES.items()
        },
    }
