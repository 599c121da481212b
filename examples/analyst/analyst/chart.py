"""Which chart a result gets, from its shape alone.

Columns are read as time (a name like date, day, week, month, quarter, year
or period, or values like 2024, 2024-03, 2024-03-15, 2024-Q1), number, or
category (text).  Then:

    rows, columns                                   chart
    one row                                         none (a single value or row)
    a time column + numbers                         line, one series per number column
    a time column + one category + one number       line, one series per category (<= 12)
    one category + one number, 2..8 parts of a      pie
      whole (non-negative, summing to 100 or 1)
    one category + numbers (<= 40 rows)             bar, one series per number column
    two categories + one number (<= 40 x 12)        bar, grouped by the second category
    anything else                                   none (the table says it)

The spec is what the page draws (and the command line names):
{"type": "bar"|"line"|"pie"|"none", "x": column, "labels": [...],
 "series": [{"name": ..., "values": [...]}], "reason": why, for "none"}.
"""
import re

MAX_BARS = 40
MAX_SERIES = 12
MAX_PIE = 8

_TIME_NAME = re.compile(r"(^|_)(date|day|week|month|quarter|year|period|time|dt)(_|$)|_(at|on)$",
                        re.I)
_TIME_VALUE = re.compile(r"^\d{4}(-(\d{2}|Q[1-4]|W\d{2})(-\d{2})?)?([ T][\d:.]+)?$")


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def column_kind(name, values):
    """'time', 'number', 'category' or 'empty' for one column."""
    present = [v for v in values if v is not None]
    if not present:
        return "empty"
    if all(isinstance(v, str) and _TIME_VALUE.match(v) for v in present):
        return "time"
    if _TIME_NAME.search(name) and all(
            (isinstance(v, int) and 1900 <= v <= 2200) or
            (isinstance(v, str) and _TIME_VALUE.match(v)) for v in present):
        return "time"
    if all(_is_number(v) for v in present):
        return "number"
    return "category"


def _none(reason):
    return {"type": "none", "reason": reason}


def _series(name, values):
    return {"name": name, "values": [v if _is_number(v) else None for v in values]}


def _pivot(rows, x, group, y):
    """labels (x in order of appearance), series per group value."""
    labels, groups, cells = [], [], {}
    for row in rows:
        if row[x] not in labels:
            labels.append(row[x])
        if row[group] not in groups:
            groups.append(row[group])
        cells[(row[x], row[group])] = row[y]
    series = [_series(str(g), [cells.get((label, g)) for label in labels]) for g in groups]
    return labels, series


def choose(columns, rows):
    if not rows or not columns:
        return _none("no rows")
    if len(rows) == 1:
        return _none("a single value" if len(columns) == 1 else "a single row")
    kinds = [column_kind(c, [r[i] for r in rows]) for i, c in enumerate(columns)]
    times = [i for i, k in enumerate(kinds) if k == "time"]
    numbers = [i for i, k in enumerate(kinds) if k == "number"]
    categories = [i for i, k in enumerate(kinds) if k == "category"]
    if not numbers:
        return _none("no numeric column to draw")

    if times:
        x = times[0]
        ordered = sorted(rows, key=lambda r: str(r[x]))
        if len(categories) == 1 and len(numbers) == 1:
            labels, series = _pivot(ordered, x, categories[0], numbers[0])
            if len(series) > MAX_SERIES:
                return _none("more than %d series" % MAX_SERIES)
        elif not categories:
            labels = []
            for r in ordered:
                labels.append(r[x])
            series = [_series(columns[i], [r[i] for r in ordered]) for i in numbers]
            if len(set(labels)) != len(labels):
                return _none("more than one row per %s" % columns[x])
        else:
            return _none("too many dimensions for one chart")
        return {"type": "line", "x": columns[x], "labels": [str(v) for v in labels],
                "series": series}

    if len(categories) == 1:
        x = categories[0]
        labels = [str(r[x]) for r in rows]
        if len(numbers) == 1:
            values = [r[numbers[0]] for r in rows]
            present = [v for v in values if v is not None]
            total = sum(present)
            whole = abs(total - 100) <= 0.5 or abs(total - 1) <= 0.005
            if 2 <= len(rows) <= MAX_PIE and present and min(present) >= 0 and whole:
                return {"type": "pie", "x": columns[x], "labels": labels,
                        "series": [_series(columns[numbers[0]], values)]}
        if len(rows) > MAX_BARS:
            return _none("more than %d bars" % MAX_BARS)
        return {"type": "bar", "x": columns[x], "labels": labels,
                "series": [_series(columns[i], [r[i] for r in rows]) for i in numbers]}

    if len(categories) == 2 and len(numbers) == 1:
        labels, series = _pivot(rows, categories[0], categories[1], numbers[0])
        if len(labels) > MAX_BARS or len(series) > MAX_SERIES:
            return _none("too many groups for one chart")
        return {"type": "bar", "x": columns[categories[0]], "labels": [str(v) for v in labels],
                "series": series}

    if not categories and len(numbers) >= 2 and len(rows) <= MAX_BARS:
        # numbers only: the first one labels the bars (an id, a bucket)
        x = numbers[0]
        return {"type": "bar", "x": columns[x], "labels": [str(r[x]) for r in rows],
                "series": [_series(columns[i], [r[i] for r in rows]) for i in numbers[1:]]}
    return _none("no chart fits this shape")
