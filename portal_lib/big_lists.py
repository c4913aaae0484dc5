"""Admin lists that open as fast over a million rows as over a hundred.

What a stock changelist does that grows with the table: an exact COUNT(*) of the filtered rows
(and another of all of them), a SELECT DISTINCT over a column for each "all values" filter, a
SELECT DISTINCT of the dates for date_hierarchy, and facet counts. Here: counts exact up to a
bound and estimated by PostgreSQL's planner beyond it, distinct values read by skipping along an
index, date filters of fixed ranges, and no facets.
"""

from __future__ import annotations

import json
from functools import cached_property

from django.contrib import admin
from django.core.paginator import Paginator
from django.db import connections
from django.utils.translation import gettext_lazy as _

# Up to this many rows a list says exactly how many it holds; beyond, about how many.
EXACT_COUNT_UP_TO = 10_000

# A filter offers at most this many values; past that, the search box is the way.
FILTER_VALUES_MAX = 50


class EstimatedCountPaginator(Paginator):
    """Exact counts up to EXACT_COUNT_UP_TO (a COUNT over a LIMIT, so bounded whatever the
    table), the planner's estimate beyond (PostgreSQL; elsewhere the exact count)."""

    @cached_property
    def count(self) -> int:
        queryset = self.object_list
        bounded = queryset.order_by()[: EXACT_COUNT_UP_TO + 1].count()
        if bounded <= EXACT_COUNT_UP_TO or connections[queryset.db].vendor != "postgresql":
            return bounded if bounded <= EXACT_COUNT_UP_TO else queryset.count()
        return max(bounded, planner_rows(queryset))


def planner_rows(queryset) -> int:
    """How many rows PostgreSQL's planner expects the query to return (one EXPLAIN, no scan)."""
    plan = json.loads(queryset.order_by().explain(format="json"))
    return int(plan[0]["Plan"]["Plan Rows"])


class IndexedValuesFilter(admin.AllValuesFieldListFilter):
    """ "All values" of a column, read by skipping along its index on PostgreSQL: one probe per
    distinct value (a recursive query), where SELECT DISTINCT reads every row. The column needs
    a btree index of its own. At most FILTER_VALUES_MAX values."""

    def __init__(self, field, request, params, model, model_admin, field_path):
        super().__init__(field, request, params, model, model_admin, field_path)
        self.lookup_choices = distinct_values(model, field.column)

    def choices(self, changelist):
        for choice in super().choices(changelist):
            # A blank value still needs a link a person (and a screen reader) can read.
            yield {**choice, "display": choice["display"] or _("(blank)")}


def distinct_values(model, column: str, *, limit: int = FILTER_VALUES_MAX) -> list:
    """The column's distinct values in order, one index probe each (MIN over an index is one
    probe in PostgreSQL and SQLite alike), where SELECT DISTINCT reads every row."""
    connection = connections[model.objects.db]
    table, col = connection.ops.quote_name(model._meta.db_table), connection.ops.quote_name(column)
    sql = (
        f"WITH RECURSIVE v(val) AS (SELECT MIN({col}) FROM {table} "
        f"UNION ALL SELECT (SELECT MIN({col}) FROM {table} WHERE {col} > v.val) "
        "FROM v WHERE v.val IS NOT NULL) "
        "SELECT val FROM v WHERE val IS NOT NULL LIMIT %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [limit])
        return [value for (value,) in cursor.fetchall()]


class BigListAdmin(admin.ModelAdmin):
    """A changelist for a table that grows without bound (see the module's docstring).

    Its default ordering needs an index, and its "all values" filters IndexedValuesFilter.
    """

    paginator = EstimatedCountPaginator
    show_full_result_count = False  # the "(N total)" beside a filtered count is a second COUNT(*)
    show_facets = admin.ShowFacets.NEVER
