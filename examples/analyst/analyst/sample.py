"""The sample sales database: regions, products, customers and orders from
2021 to 2024, generated deterministically (the same rows on every machine
and Python version: the generator has its own PRNG), so the evaluation's
reference results hold everywhere.

The data has shapes worth asking about: regions grow at different rates
(South fastest, West shrinking), Electronics grows while Furniture shrinks,
November and December are busy, a few products launch late, discounts are
deeper for corporate customers and some orders are cancelled or returned.

    make_sqlite(path)           writes the database (atomically)
    make_postgres(connection)   the same rows into PostgreSQL (tests)
"""
import bisect
import datetime
import os
import sqlite3
import tempfile

SEED = 20241231
START = datetime.date(2021, 1, 1)
END = datetime.date(2024, 12, 31)
#  "Today" for the sample: the day after its last order
TODAY = datetime.date(2025, 1, 1)
#  PRAGMA application_id of the sample's file: how the application knows it
#  (and gives the prompt the sample's notes and today's date) under any name
APPLICATION_ID = 0x534D4131


class Rng:
    """splitmix64: small, fast enough, and the same everywhere."""

    MASK = (1 << 64) - 1

    def __init__(self, seed):
        self.state = seed & self.MASK

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & self.MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & self.MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & self.MASK
        return z ^ (z >> 31)

    def random(self):
        return (self.next_u64() >> 11) / float(1 << 53)

    def below(self, n):
        return self.next_u64() % n

    def randint(self, low, high):
        return low + self.below(high - low + 1)

    def choice(self, seq):
        return seq[self.below(len(seq))]

    def weighted(self, seq, weights):
        total = sum(weights)
        x = self.random() * total
        for item, weight in zip(seq, weights):
            x -= weight
            if x < 0:
                return item
        return seq[-1]


#  name, yearly growth of orders, orders a month in January 2021
REGIONS = [("North", 1.04, 70), ("South", 1.24, 42), ("East", 1.10, 64),
           ("West", 0.96, 62), ("Central", 1.15, 40)]

#  category, share of orders, yearly trend
CATEGORIES = [("Electronics", 1.7, 1.15), ("Furniture", 1.3, 0.93), ("Office Supplies", 3.0, 1.0),
              ("Apparel", 2.4, 1.02), ("Sports", 1.8, 1.05), ("Kitchen", 2.0, 1.0)]

#  name, category, list price, launched on
PRODUCTS = [
    ("Laptop Pro 14", "Electronics", 1299.00, "2019-05-01"),
    ("Laptop Air 13", "Electronics", 999.00, "2022-03-01"),
    ("Wireless Mouse", "Electronics", 29.00, "2018-02-01"),
    ("Mechanical Keyboard", "Electronics", 89.00, "2019-09-15"),
    ("27-inch Monitor", "Electronics", 329.00, "2020-01-10"),
    ("Noise-Cancelling Headphones", "Electronics", 249.00, "2020-06-01"),
    ("Standing Desk", "Furniture", 549.00, "2019-03-01"),
    ("Ergonomic Chair", "Furniture", 399.00, "2018-11-01"),
    ("Bookshelf", "Furniture", 149.00, "2018-01-15"),
    ("Filing Cabinet", "Furniture", 189.00, "2018-01-15"),
    ("Desk Lamp", "Furniture", 45.00, "2019-07-01"),
    ("Meeting Table", "Furniture", 899.00, "2020-02-01"),
    ("Printer Paper Box", "Office Supplies", 39.00, "2017-01-01"),
    ("Gel Pens 12-pack", "Office Supplies", 14.00, "2017-01-01"),
    ("Stapler", "Office Supplies", 18.00, "2017-01-01"),
    ("Whiteboard", "Office Supplies", 120.00, "2018-04-01"),
    ("Sticky Notes 24-pack", "Office Supplies", 19.00, "2017-06-01"),
    ("Label Maker", "Office Supplies", 59.00, "2022-09-01"),
    ("Fleece Jacket", "Apparel", 89.00, "2019-09-01"),
    ("Running Shoes", "Apparel", 120.00, "2019-03-01"),
    ("Rain Coat", "Apparel", 140.00, "2021-09-01"),
    ("Wool Sweater", "Apparel", 75.00, "2018-10-01"),
    ("Baseball Cap", "Apparel", 25.00, "2018-04-01"),
    ("Hiking Socks 3-pack", "Apparel", 22.00, "2019-01-01"),
    ("Yoga Mat", "Sports", 35.00, "2018-01-01"),
    ("Dumbbell Set", "Sports", 159.00, "2019-01-01"),
    ("Road Bike", "Sports", 1099.00, "2023-04-01"),
    ("Tennis Racket", "Sports", 129.00, "2018-05-01"),
    ("Camping Tent", "Sports", 249.00, "2019-04-01"),
    ("Water Bottle", "Sports", 19.00, "2018-01-01"),
    ("Espresso Machine", "Kitchen", 449.00, "2019-10-01"),
    ("Blender", "Kitchen", 89.00, "2018-06-01"),
    ("Chef's Knife", "Kitchen", 79.00, "2018-06-01"),
    ("Cast Iron Pan", "Kitchen", 49.00, "2018-06-01"),
    ("Toaster", "Kitchen", 39.00, "2018-06-01"),
    ("Coffee Grinder", "Kitchen", 69.00, "2023-01-15"),
]

FIRST = ["Ava", "Ben", "Chloe", "Daniel", "Emma", "Felix", "Grace", "Henry", "Isla", "Jack",
         "Kara", "Liam", "Mia", "Noah", "Olivia", "Paul", "Quinn", "Ruby", "Sam", "Tara",
         "Umar", "Vera", "Will", "Xena", "Yusuf", "Zoe", "Aaron", "Bella", "Carlos", "Dana",
         "Elena", "Farid", "Gina", "Hugo", "Ines", "Jonas", "Keiko", "Leon", "Maya", "Nils"]
LAST = ["Smith", "Chen", "Garcia", "Muller", "Rossi", "Kowalski", "Novak", "Tanaka", "Silva",
        "Okafor", "Dubois", "Jensen", "Khan", "Larsen", "Moreau", "Nakamura", "Oliveira",
        "Petrov", "Quinlan", "Reyes", "Schmidt", "Torres", "Usman", "Varga", "Weber", "Young",
        "Zhang", "Ahmed", "Brown", "Costa"]

SEGMENTS = ["Consumer", "Small Business", "Corporate"]
SEGMENT_WEIGHTS = [60, 25, 15]
#  November and December are busy, summer is quiet
SEASON = [0.80, 0.76, 0.92, 0.95, 1.00, 0.93, 0.88, 0.92, 1.00, 1.05, 1.30, 1.52]
STATUSES = ["completed", "cancelled", "returned"]
STATUS_WEIGHTS = [88, 7, 5]
CHANNELS = ["online", "store", "phone"]
CUSTOMERS = 1500

SCHEMA = """
CREATE TABLE regions (
    region_id   INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE
);
CREATE TABLE products (
    product_id  INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    category    TEXT NOT NULL,
    unit_price  REAL NOT NULL,              -- list price
    launched_on DATE NOT NULL
);
CREATE TABLE customers (
    customer_id INTEGER PRIMARY KEY,
    name        TEXT NOT NULL,
    segment     TEXT NOT NULL,              -- Consumer, Small Business, Corporate
    region_id   INTEGER NOT NULL REFERENCES regions (region_id),
    signup_date DATE NOT NULL
);
CREATE TABLE orders (
    order_id    INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (customer_id),
    product_id  INTEGER NOT NULL REFERENCES products (product_id),
    order_date  DATE NOT NULL,
    quantity    INTEGER NOT NULL,
    unit_price  REAL NOT NULL,              -- price paid per unit, before discount
    discount    REAL NOT NULL,              -- 0.0 .. 0.2
    amount      REAL NOT NULL,              -- quantity * unit_price * (1 - discount)
    status      TEXT NOT NULL,              -- completed, cancelled, returned
    channel     TEXT NOT NULL               -- online, store, phone
);
CREATE INDEX orders_date ON orders (order_date);
CREATE INDEX orders_customer ON orders (customer_id);
CREATE INDEX orders_product ON orders (product_id);
CREATE INDEX customers_region ON customers (region_id);
"""

#  The same tables in PostgreSQL's types (money as NUMERIC)
PG_SCHEMA = SCHEMA.replace("REAL", "NUMERIC(12,2)")


def _month_days(year, month):
    nxt = datetime.date(year + (month == 12), month % 12 + 1, 1)
    return (nxt - datetime.date(year, month, 1)).days


def generate():
    """Every table's rows: {table: [tuple, ...]}, in insertion order."""
    rng = Rng(SEED)
    regions = [(i + 1, name) for i, (name, _, _) in enumerate(REGIONS)]
    products = [(i + 1, name, category, price, launched)
                for i, (name, category, price, launched) in enumerate(PRODUCTS)]

    # Customers: spread over the regions like their orders; later sign-ups
    # where a region grows
    customers = []
    used = set()
    region_weights = [base * growth ** 2 for _, growth, base in REGIONS]
    first_day = datetime.date(2020, 3, 1)
    span = (datetime.date(2024, 11, 30) - first_day).days
    by_region = {r: [] for r, _ in regions}
    for customer_id in range(1, CUSTOMERS + 1):
        while True:
            name = "%s %s" % (rng.choice(FIRST), rng.choice(LAST))
            if name not in used or len(used) >= len(FIRST) * len(LAST):
                break
            name = "%s %s." % (name, chr(ord("A") + rng.below(26)))
            if name not in used:
                break
        used.add(name)
        region_id = rng.weighted([r for r, _ in regions], region_weights)
        growth = REGIONS[region_id - 1][1]
        # growing regions sign customers up later: skew the day towards the end
        skew = 1.0 / growth ** 2
        day = first_day + datetime.timedelta(days=int(span * rng.random() ** skew))
        segment = rng.weighted(SEGMENTS, SEGMENT_WEIGHTS)
        customers.append((customer_id, name, segment, region_id, day.isoformat()))
    for c in sorted(customers, key=lambda c: (c[4], c[0])):
        by_region[c[3]].append(c)
    signups = {r: [c[4] for c in cs] for r, cs in by_region.items()}

    # Orders, month by month and region by region
    category_weight = {name: share for name, share, _ in CATEGORIES}
    category_trend = {name: trend for name, _, trend in CATEGORIES}
    orders = []
    for year in range(START.year, END.year + 1):
        for month in range(1, 13):
            t = (year - START.year) + (month - 1) / 12.0
            days = _month_days(year, month)
            first = datetime.date(year, month, 1).isoformat()
            live = [p for p in products if p[4] <= first]
            weights = [category_weight[p[2]] * category_trend[p[2]] ** t / p[3] ** 0.35
                       for p in live]
            for region_id, (_, growth, base) in enumerate(REGIONS, start=1):
                expected = base * growth ** t * SEASON[month - 1]
                count = int(expected * (0.9 + 0.2 * rng.random()) + 0.5)
                for _ in range(count):
                    date = datetime.date(year, month, 1 + rng.below(days))
                    iso = date.isoformat()
                    n = bisect.bisect_right(signups[region_id], iso)
                    if n == 0:
                        continue
                    customer = by_region[region_id][rng.below(n)]
                    product = rng.weighted(live, weights)
                    price = round(product[3] * (0.94 + 0.02 * (year - START.year)), 2)
                    if product[3] < 50:
                        quantity = rng.weighted([1, 2, 3, 4, 5, 6, 8, 10],
                                                [30, 22, 14, 10, 8, 6, 5, 5])
                    else:
                        quantity = rng.weighted([1, 2, 3], [75, 18, 7])
                    deep = customer[2] == "Corporate"
                    discount = rng.weighted([0.0, 0.05, 0.1, 0.15, 0.2],
                                            [30, 20, 20, 15, 15] if deep else [62, 15, 12, 7, 4])
                    amount = round(quantity * price * (1 - discount), 2)
                    status = rng.weighted(STATUSES, STATUS_WEIGHTS)
                    online = 0.45 + 0.05 * t
                    channel = rng.weighted(CHANNELS, [online, 0.9 - online, 0.1])
                    orders.append([iso, customer[0], product[0], quantity, price, discount,
                                   amount, status, channel])
    orders.sort(key=lambda o: o[0])
    rows = [(i + 1, o[1], o[2], o[0], o[3], o[4], o[5], o[6], o[7], o[8])
            for i, o in enumerate(orders)]
    return {"regions": regions, "products": products, "customers": customers, "orders": rows}


def make_sqlite(path):
    """Writes the sample database to path (replacing it atomically)."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".sample-", suffix=".db", dir=os.path.dirname(path))
    os.close(fd)
    try:
        db = sqlite3.connect(tmp)
        db.execute("PRAGMA application_id = %d" % APPLICATION_ID)
        db.executescript(SCHEMA)
        for table, rows in generate().items():
            marks = ",".join("?" * len(rows[0]))
            db.executemany("INSERT INTO %s VALUES (%s)" % (table, marks), rows)
        db.commit()
        db.close()
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def make_postgres(connection):
    """Creates the sample tables in a psycopg2 connection's database."""
    with connection.cursor() as cur:
        cur.execute(PG_SCHEMA)
        for table, rows in generate().items():
            marks = ",".join(["%s"] * len(rows[0]))
            cur.executemany("INSERT INTO %s VALUES (%s)" % (table, marks), rows)
    connection.commit()


def is_sample(path):
    """True for a SQLite file this module made."""
    try:
        with open(path, "rb") as f:
            head = f.read(72)
    except OSError:
        return False
    return head[:16] == b"SQLite format 3\x00" and int.from_bytes(head[68:72], "big") == APPLICATION_ID


def ensure_sqlite(path):
    """The sample at path, made if it is missing."""
    if not os.path.exists(path):
        make_sqlite(path)
    return path
