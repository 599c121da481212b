"""Chart selection from the result's shape."""
from analyst.chart import choose, column_kind


def test_column_kinds():
    assert column_kind("month", ["2024-01", "2024-02"]) == "time"
    assert column_kind("d", ["2024-01-05", None]) == "time"
    assert column_kind("quarter", ["2024-Q1", "2024-Q2"]) == "time"
    assert column_kind("year", [2021, 2022]) == "time"
    assert column_kind("order_year", ["2021"]) == "time"
    assert column_kind("created_at", ["2024-01-05 10:00:00"]) == "time"
    assert column_kind("orders", [2021, 2022]) == "number"      # a count, not a year
    assert column_kind("year", [1, 2]) == "number"
    assert column_kind("region", ["North", "South"]) == "category"
    assert column_kind("revenue", [1.5, None, 3]) == "number"
    assert column_kind("x", [None]) == "empty"


def test_one_category_and_one_number_is_a_bar_per_row():
    spec = choose(["region", "revenue"], [["North", 10.0], ["South", 20.5], ["West", 7]])
    assert spec == {"type": "bar", "x": "region", "labels": ["North", "South", "West"],
                    "series": [{"name": "revenue", "values": [10.0, 20.5, 7]}]}


def test_a_time_column_is_a_line_in_time_order():
    spec = choose(["month", "revenue"], [["2024-02", 5], ["2024-01", 3], ["2024-03", None]])
    assert spec["type"] == "line" and spec["x"] == "month"
    assert spec["labels"] == ["2024-01", "2024-02", "2024-03"]
    assert spec["series"] == [{"name": "revenue", "values": [3, 5, None]}]
    # integer years are time when the column says so
    assert choose(["year", "revenue"], [[2021, 1.0], [2022, 2.0]])["type"] == "line"


def test_time_category_number_is_one_line_per_category():
    rows = [["2021", "North", 1], ["2021", "South", 2], ["2022", "North", 3], ["2022", "South", 4]]
    spec = choose(["year", "region", "revenue"], rows)
    assert spec["type"] == "line" and spec["labels"] == ["2021", "2022"]
    assert spec["series"] == [{"name": "North", "values": [1, 3]},
                              {"name": "South", "values": [2, 4]}]
    many = [["2021", "r%d" % i, i] for i in range(13)]
    assert choose(["year", "region", "revenue"], many)["type"] == "none"


def test_parts_of_a_whole_are_a_pie():
    shares = [["Electronics", 40.5], ["Furniture", 19.5], ["Kitchen", 40.0]]
    assert choose(["category", "share"], shares)["type"] == "pie"
    assert choose(["segment", "fraction"], [["a", 0.25], ["b", 0.75]])["type"] == "pie"
    # rates that do not add up to a whole are bars
    assert choose(["channel", "cancelled_pct"], [["online", 7.1], ["store", 6.8]])["type"] == "bar"
    # too many slices, or a negative one: bars
    many = [["c%d" % i, 10.0] for i in range(10)]
    assert choose(["c", "share"], many)["type"] == "bar"
    assert choose(["c", "share"], [["a", 110.0], ["b", -10.0]])["type"] == "bar"


def test_two_categories_and_a_number_are_grouped_bars():
    rows = [["North", "Kitchen", 1], ["North", "Sports", 2], ["South", "Kitchen", 3]]
    spec = choose(["region", "category", "revenue"], rows)
    assert spec["type"] == "bar" and spec["labels"] == ["North", "South"]
    assert spec["series"] == [{"name": "Kitchen", "values": [1, 3]},
                              {"name": "Sports", "values": [2, None]}]


def test_shapes_without_a_chart():
    assert choose(["n"], [[5]]) == {"type": "none", "reason": "a single value"}
    assert choose(["region", "revenue"], [["North", 1]])["reason"] == "a single row"
    assert choose(["a"], [])["reason"] == "no rows"
    assert choose(["name", "city"], [["a", "b"], ["c", "d"]])["reason"] == \
        "no numeric column to draw"
    many = [["p%d" % i, i] for i in range(41)]
    assert choose(["product", "units"], many)["reason"] == "more than 40 bars"
    assert choose(["month", "v"], [["2024-01", 1], ["2024-01", 2]])["type"] == "none"
